"""docs/python-api.md's runnable blocks run as documented, so that the documented API cannot rot.

A fenced ``python`` block preceded by the line ``<!-- test -->`` runs; one preceded by ``<!-- test: needs a, b -->``
runs when the packages ``a`` and ``b`` are importable. The blocks run in order, in one namespace, in a temporary
working directory holding what the page says it holds: ``models/posfeat.pt`` (an untrained model of the demo's
architecture, conf/config.yaml ``model``), ``photo.jpg`` and ``images/photo.jpg`` (a 200×300 crop of scikit-image's
``chelsea`` photograph, ``skimage.data.chelsea()``: Stefan van der Walt's cat, shipped with scikit-image), and the
repository's ``params.yaml``. The results are then checked against independent computations.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posfeat.models import build_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"
DEMO_MODEL = dict(encoder="daisy", desc_dim=200, det_conv1=32, det_img=16, det_mid=32, input_norm="standardize")
BLOCK = re.compile(r"^<!-- test(?::\s*needs\s+(?P<needs>[\w., ]+))? -->\n```python\n(?P<code>.*?)^```", re.M | re.S)


def runnable_blocks(text: str) -> list[tuple[int, tuple[str, ...], str]]:
    """``(line number of the code, packages needed, code)`` of each marked ``python`` block of ``text``."""
    blocks = []
    for m in BLOCK.finditer(text):
        needs = tuple(p.strip() for p in (m.group("needs") or "").split(",") if p.strip())
        blocks.append((text.count("\n", 0, m.start("code")) + 1, needs, m.group("code")))
    return blocks


def test_marker_parsing():
    text = "a\n<!-- test -->\n```python\nx = 1\n```\n```python\nskipped = 1\n```\n<!-- test: needs onnx, hloc -->\n"
    text += "```python\ny = 2\n```\n<!-- test -->\n```bash\nls\n```\n"
    assert runnable_blocks(text) == [(4, (), "x = 1\n"), (11, ("onnx", "hloc"), "y = 2\n")]


def test_the_page_documents_the_three_line_extraction():
    text = DOC.read_text()
    assert text.startswith("# Python API\n")
    three = (
        'from posfeat.extraction import load_model, extract_posfeat\n\nmodel = load_model("models/posfeat.pt")\n'
        "feats = extract_posfeat(model, image)\n"
    )
    assert any(code == three for _, needs, code in runnable_blocks(text) if not needs)
    assert len(runnable_blocks(text)) >= 7


@pytest.fixture
def doc_workdir(tmp_path, monkeypatch) -> Path:
    """The working directory the page's blocks expect (module docstring)."""
    import skimage.data

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "models" / "posfeat.pt", build_model(DEMO_MODEL))
    photo = np.ascontiguousarray(skimage.data.chelsea()[50:250, 100:400])
    (tmp_path / "images").mkdir()
    for path in (tmp_path / "photo.jpg", tmp_path / "images" / "photo.jpg"):
        assert cv2.imwrite(str(path), photo[:, :, ::-1])
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_blocks(text: str) -> tuple[dict, list[int]]:
    """Run the page's blocks in one namespace → ``(namespace, line numbers of the blocks skipped)``."""
    ns: dict = {"__name__": "python_api_doc"}
    skipped = []
    for line, needs, code in runnable_blocks(text):
        if any(importlib.util.find_spec(p) is None for p in needs):
            skipped.append(line)
            continue
        exec(compile(code, f"{DOC}:{line}", "exec"), ns)
    return ns, skipped


def test_documented_blocks_run(doc_workdir):
    from posfeat.datasets.images import read_image
    from posfeat.extraction import ExtractConfig, extract_posfeat, extract_posfeat_batch, load_model
    from posfeat.extraction.network import run_network

    ns, skipped = _run_blocks(DOC.read_text())
    image = read_image(doc_workdir / "photo.jpg")
    model = load_model(doc_workdir / "models" / "posfeat.pt", "cpu")

    # extract one image: the dict the page describes, equal to an extraction of our own
    feats, want = ns["feats"], extract_posfeat(model, image, ExtractConfig(), "cpu")
    assert set(feats) == {"keypoints", "scores", "descriptors", "image_size"} and len(feats["scores"]) > 0
    for key in ("keypoints", "scores", "descriptors"):
        np.testing.assert_allclose(feats[key], want[key], rtol=0, atol=1e-5)
    assert feats["descriptors"].shape[1] == DEMO_MODEL["desc_dim"] and tuple(feats["image_size"]) == (300, 200)
    np.testing.assert_allclose(np.linalg.norm(feats["descriptors"], axis=1), 1.0, atol=1e-5)
    assert np.all(np.diff(feats["scores"]) <= 0)
    # the batch: the image and its mirror image, each with its own features
    pair = extract_posfeat_batch(model, [image, np.ascontiguousarray(image[:, ::-1])], ExtractConfig(), "cpu")
    assert len(ns["both"]) == 2
    for got, expected in zip(ns["both"], pair):
        np.testing.assert_allclose(got["keypoints"], expected["keypoints"], rtol=0, atol=1e-5)

    # settings: from the page's own arguments and from params.yaml
    assert ns["config"].scales == (1.0, 0.71, 0.5) and ns["config"].pyramid and len(ns["feats_pyramid"]["scores"]) > 0
    assert ns["hpatches"].rotations == (0.0, -45.0, 45.0) and ns["aachen"].max_keypoints > 0

    # the hloc extractor: hloc's layout, the features of the study's HPatches settings with 4096 keypoints
    pred = ns["pred"]
    n = pred["scores"].shape[1]
    assert pred["keypoints"].shape == (1, n, 2) and pred["descriptors"].shape == (1, DEMO_MODEL["desc_dim"], n)
    from posfeat.hloc_extractor import STUDY_HPATCHES

    study = extract_posfeat(model, image, ExtractConfig.from_dict({**STUDY_HPATCHES, "max_keypoints": 4096}), "cpu")
    np.testing.assert_allclose(pred["keypoints"][0].numpy(), study["keypoints"], rtol=0, atol=1e-5)

    # the TorchScript export: PyTorch's maps, and the extraction's descriptors sampled from its map
    x = ns["x"]
    ref = run_network(model, x)
    h, w = image.shape[:2]
    np.testing.assert_allclose(ns["score"].numpy(), ref["score"][:, :, :h, :w].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(ns["descriptors"].numpy(), ref["local_map"].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(ns["desc"].numpy(), want["descriptors"], rtol=0, atol=1e-4)

    if "onnx_score" in ns:  # the ONNX block ran (onnx and onnxruntime installed)
        np.testing.assert_allclose(ns["onnx_score"], ref["score"].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(ns["onnx_descriptors"], ref["local_map"].numpy(), rtol=0, atol=1e-4)
    elif importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
        pytest.fail("the ONNX block did not run although onnx and onnxruntime are installed")
    if skipped:
        print(f"blocks skipped for want of their packages: lines {skipped}")
