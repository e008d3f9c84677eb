"""Export of the dense network (posfeat/export.py, ``posfeat export``): the exported score and descriptor maps equal
PyTorch's on a real photograph, for the demo encoder (``daisy``) and a ResNet-like one (``small``).

The photograph is scikit-image's ``coffee`` (``skimage.data.coffee()``: a cup of coffee, 400×600 RGB, shipped with
scikit-image; public domain, by Rachel Michetti). PyTorch's maps come from
:func:`posfeat.extraction.network.run_network`, the call the extraction makes; the exported modules are traced on a
random image of another size, so that the photograph also checks the dynamic height, width and batch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posfeat.cli import main as cli_main
from posfeat.export import (
    DenseNetwork,
    example_image,
    export_onnx,
    export_torchscript,
    input_multiple,
    load_torchscript_metadata,
)
from posfeat.extraction.network import run_network
from posfeat.io import DataError
from posfeat.models import build_model, save_checkpoint

MODELS = {
    "daisy": dict(encoder="daisy", desc_dim=200, det_conv1=8, det_img=4, det_mid=8, input_norm="standardize"),
    "small": dict(encoder="small", det_conv1=16, det_img=8, det_mid=8),
}
"""The demo's encoder (with its input standardisation, conf/config.yaml ``model``) and the light ResNet-like one, each
with a slim detector head; untrained, seeded."""
TRACE_SIZE = (64, 96)
TOL = 1e-4


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(MODELS[name]).eval()


def _photo_batch() -> torch.Tensor:
    """Two 96×128 crops of scikit-image's ``coffee`` photograph as a ``2×3×96×128`` batch in ``[0, 1]``."""
    import skimage.data

    img = skimage.data.coffee()
    crops = np.stack([img[120:216, 200:328], img[40:136, 380:508]])
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)


def _reference(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's score and descriptor maps, as the extraction computes them."""
    out = run_network(model, x)
    return out["score"].numpy(), out["local_map"].numpy()


def _assert_maps_equal(got, want) -> None:
    for g, w, what in zip(got, want, ("score", "descriptors")):
        g = np.asarray(g)
        assert g.shape == w.shape, what
        np.testing.assert_allclose(g, w, rtol=0, atol=TOL, err_msg=what)


def test_input_multiple_and_example_size():
    assert input_multiple(_model("daisy")) == 4 and input_multiple(_model("small")) == 16
    assert tuple(example_image(_model("daisy"), 36, 44).shape) == (1, 3, 36, 44)
    with pytest.raises(DataError, match="multiples of 16"):
        example_image(_model("small"), 36, 48)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchscript_matches_pytorch_on_a_photograph(name, tmp_path):
    model = _model(name)
    path = tmp_path / "dense.pt"
    export_torchscript(model, path, example_image(model, *TRACE_SIZE))
    loaded = torch.jit.load(str(path))
    photo = _photo_batch()
    for x in (photo[:1], photo):  # one image, then a batch of two
        with torch.no_grad():
            got = [t.numpy() for t in loaded(x)]
        _assert_maps_equal(got, _reference(model, x))
    meta = load_torchscript_metadata(path)
    assert meta["config"] == model.config and meta["input_multiple"] == input_multiple(model)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_pytorch_on_a_photograph(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = _model(name)
    path = export_onnx(model, tmp_path / "dense.onnx", *TRACE_SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["score", "descriptors"]
    photo = _photo_batch()
    for x in (photo[:1], photo):
        _assert_maps_equal(session.run(None, {"image": x.numpy()}), _reference(model, x))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["posfeat"])["config"] == model.config


def test_onnx_fixed_size(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = export_onnx(_model("small"), tmp_path / "fixed.onnx", 96, 128, dynamic=False)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 96, 128]


def test_dense_network_normalises_inside():
    """The exported module takes the raw [0, 1] image: DenseNetwork(x) is the model on the normalised image."""
    model = _model("small")
    x = _photo_batch()[:1]
    score, desc = DenseNetwork(model)(x)
    _assert_maps_equal([score.detach().numpy(), desc.detach().numpy()], _reference(model, x))


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "posfeat.pt"
    save_checkpoint(path, _model("daisy"))
    return path


def test_cli_exports_torchscript(checkpoint, tmp_path, capsys):
    out = tmp_path / "dense.pt"
    assert cli_main(["export", "--weights", str(checkpoint), "--out", str(out), "--height", "64", "--width", "96"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["export"] == "torchscript" and printed["desc_dim"] == 200 and out.is_file()
    x = _photo_batch()[:1]
    with torch.no_grad():
        got = [t.numpy() for t in torch.jit.load(str(out))(x)]
    _assert_maps_equal(got, _reference(_model("daisy"), x))


def test_cli_exports_onnx(checkpoint, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "dense.onnx"
    assert cli_main(["export", "--weights", str(checkpoint), "--out", str(out), "--height", "64", "--width", "96"]) == 0
    assert json.loads(capsys.readouterr().out)["export"] == "onnx"
    x = _photo_batch()[:1]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    _assert_maps_equal(got, _reference(_model("daisy"), x))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "dense.trt"], "unknown export format '.trt'"),
        (["--out", "dense.pt", "--height", "50"], "multiples of 4"),
    ],
)
def test_cli_bad_input_is_one_line(checkpoint, tmp_path, capsys, args, message):
    args = [a if not a.startswith("dense") else str(tmp_path / a) for a in args]
    assert cli_main(["export", "--weights", str(checkpoint), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("posfeat: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_missing_weights_is_one_line(tmp_path, capsys):
    assert cli_main(["export", "--weights", str(tmp_path / "none.pt"), "--out", str(tmp_path / "d.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
