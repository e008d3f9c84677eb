"""PoSFeat as an hloc extractor (posfeat/hloc_extractor.py): hloc's model contract, and features equal to
:func:`posfeat.extraction.extract_posfeat` on the same photograph.

The photograph is a crop of scikit-image's ``astronaut`` (``skimage.data.astronaut()``, Eileen Collins, NASA; public
domain, shipped with scikit-image). hloc is not a dependency: the contract is tested on the local base class, hloc's
registration on a minimal stand-in package written here, and with hloc installed, through hloc itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import posfeat
from posfeat.extraction import ExtractConfig, extract_posfeat, extract_posfeat_batch, load_model
from posfeat.hloc_extractor import (
    CONFS,
    STUDY_HPATCHES,
    PoSFeatExtractor,
    hloc_conf,
    images_from_batch,
)
from posfeat.models import build_model, save_checkpoint
from posfeat.settings import UnknownSettingError

ROOT = Path(__file__).resolve().parents[1]
DAISY_MODEL = {"encoder": "daisy", "desc_dim": 200, "det_conv1": 8, "det_img": 4, "det_mid": 8}
"""The demo's encoder with a slim detector head (untrained, seeded)."""
TOL = 1e-5


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hloc") / "posfeat.pt"
    torch.manual_seed(0)
    save_checkpoint(path, build_model(DAISY_MODEL))
    return path


def _photo(top: int = 40, left: int = 150, h: int = 96, w: int = 128) -> np.ndarray:
    """An RGB uint8 crop of scikit-image's ``astronaut`` photograph."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[top : top + h, left : left + w])


def _as_hloc_batch(*images: np.ndarray) -> torch.Tensor:
    """Images as hloc's loader gives them: float ``B×3×H×W``, uint8 / 255."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def _expected(weights: Path, image: np.ndarray, settings: dict) -> dict[str, np.ndarray]:
    """The independent path: the checkpoint loaded by load_model and extract_posfeat on the uint8 image."""
    return extract_posfeat(load_model(weights, "cpu"), image, ExtractConfig.from_dict(settings), "cpu")


def _assert_matches(pred: dict[str, torch.Tensor], b: int, want: dict[str, np.ndarray]) -> None:
    n = len(pred["scores"][b])
    np.testing.assert_allclose(pred["keypoints"][b].numpy(), want["keypoints"][:n], rtol=0, atol=TOL)
    np.testing.assert_allclose(pred["scores"][b].numpy(), want["scores"][:n], rtol=0, atol=TOL)
    np.testing.assert_allclose(pred["descriptors"][b].numpy().T, want["descriptors"][:n], rtol=0, atol=TOL)


def test_default_conf_is_the_study_hpatches_settings():
    """The defaults reproduce params.yaml's extract.hpatches (composed from conf/config.yaml), key for key."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert STUDY_HPATCHES == params["extract"]["hpatches"]
    defaults = {k: v for k, v in PoSFeatExtractor.default_conf.items() if k != "weights"}
    assert ExtractConfig.from_dict(defaults) == ExtractConfig.from_dict(params["extract"]["hpatches"])
    assert PoSFeatExtractor.required_inputs == ["image"]
    model = CONFS["posfeat"]["model"]
    assert model["name"] == "posfeat" and {k: model[k] for k in STUDY_HPATCHES} == STUDY_HPATCHES
    assert CONFS["posfeat"]["preprocessing"] == {"grayscale": False, "resize_max": None}


def test_conf_merge(weights):
    ex = PoSFeatExtractor({"name": "posfeat", "weights": str(weights), "max_keypoints": 64, "rotations": [0]})
    merged = {**PoSFeatExtractor.default_conf, "name": "posfeat", "weights": str(weights)}
    assert ex.conf == {**merged, "max_keypoints": 64, "rotations": [0]}
    want = ExtractConfig.from_dict({**STUDY_HPATCHES, "max_keypoints": 64, "rotations": [0]})
    assert ex.extract_config == want
    assert PoSFeatExtractor.default_conf["max_keypoints"] == 8192  # the class default is untouched


def test_conf_errors(weights, tmp_path):
    with pytest.raises(ValueError, match="weights"):
        PoSFeatExtractor({})
    with pytest.raises(UnknownSettingError, match="max_keypoint"):
        PoSFeatExtractor({"weights": str(weights), "max_keypoint": 10})
    with pytest.raises(ValueError, match="not found"):
        PoSFeatExtractor({"weights": str(tmp_path / "missing.pt")})


def test_missing_input_is_an_error(weights):
    ex = PoSFeatExtractor({"weights": str(weights)})
    with pytest.raises((KeyError, AssertionError), match="image"):
        ex({"images": _as_hloc_batch(_photo())})


def test_images_from_batch_recovers_the_uint8_image():
    img = _photo()
    (back,) = images_from_batch(_as_hloc_batch(img))
    assert back.dtype == np.uint8 and np.array_equal(back, img)
    (grey,) = images_from_batch(_as_hloc_batch(img)[:, :1])
    assert np.array_equal(grey, np.repeat(img[:, :, :1], 3, axis=2))
    with pytest.raises(ValueError, match="B×3×H×W"):
        images_from_batch(torch.zeros(1, 2, 8, 8))


def test_study_settings_output_equals_extract_posfeat(weights):
    """The study's HPatches settings (5 scales, 3 rotations): hloc's layout, and the features of extract_posfeat."""
    img = _photo()
    ex = PoSFeatExtractor({"weights": str(weights)}).eval()
    pred = ex({"image": _as_hloc_batch(img)})
    want = _expected(weights, img, STUDY_HPATCHES)
    n = len(want["scores"])
    assert n > 0
    assert pred["keypoints"].shape == (1, n, 2) and pred["scores"].shape == (1, n)
    assert pred["descriptors"].shape == (1, DAISY_MODEL["desc_dim"], n)
    assert all(v.dtype == torch.float32 for v in pred.values())
    _assert_matches(pred, 0, want)
    norms = pred["descriptors"][0].norm(dim=0)
    np.testing.assert_allclose(norms.numpy(), 1.0, atol=1e-5)  # unit columns: D is the first axis


def test_batch_of_two_keeps_the_best_common_count(weights):
    """Two images in one batch: each keeps its best N keypoints, N the smaller count of the two."""
    settings = {"weights": str(weights), "scales": [1.0], "pyramid": False, "rotations": [0], "threshold": 0.5}
    a, b = _photo(), _photo(top=250, left=220)
    pred = PoSFeatExtractor(settings)({"image": _as_hloc_batch(a, b)})
    study = ExtractConfig.from_dict({**STUDY_HPATCHES, **{k: v for k, v in settings.items() if k != "weights"}})
    # the same batch through extract_posfeat_batch (a batch's convolutions may round unlike one image's)
    want = extract_posfeat_batch(load_model(weights, "cpu"), [a, b], study, "cpu")
    assert pred["keypoints"].shape[:2] == (2, min(len(w["scores"]) for w in want))
    for i, w in enumerate(want):
        _assert_matches(pred, i, w)


def test_hloc_conf_copies():
    conf = hloc_conf("w.pt", output="feats-x", max_keypoints=100)
    assert conf["model"]["weights"] == "w.pt" and conf["model"]["max_keypoints"] == 100
    assert conf["output"] == "feats-x" and conf["model"]["scales"] == STUDY_HPATCHES["scales"]
    assert CONFS["posfeat"]["model"]["max_keypoints"] == 8192 and CONFS["posfeat"]["output"] == "feats-posfeat-n8192"


STAND_IN = {
    "hloc/__init__.py": "",
    "hloc/extractors/__init__.py": "",
    "hloc/utils/__init__.py": "",
    "hloc/utils/base_model.py": '''
        """A minimal stand-in for hloc's model base: the contract as hloc documents it, nothing more."""
        import inspect

        import torch.nn as nn


        class BaseModel(nn.Module):
            default_conf = {}
            required_inputs = []

            def __init__(self, conf):
                super().__init__()
                self.conf = conf = {**self.default_conf, **conf}
                self._init(conf)

            def forward(self, data):
                for key in self.required_inputs:
                    assert key in data, f"missing key {key} in data"
                return self._forward(data)


        def dynamic_load(root, name):
            """The one BaseModel subclass defined in module root.name."""
            path = f"{root.__name__}.{name}"
            module = __import__(path, fromlist=[""])
            found = [
                c for _, c in inspect.getmembers(module, inspect.isclass)
                if c.__module__ == path and issubclass(c, BaseModel)
            ]
            assert len(found) == 1, found
            return found[0]
    ''',
}


@pytest.fixture
def stand_in_hloc(tmp_path, monkeypatch):
    """A fresh ``posfeat.hloc_extractor`` imported with the stand-in ``hloc`` on the path; both undone after."""
    if importlib.util.find_spec("hloc") is not None:
        pytest.skip("hloc is installed: test_through_hloc runs instead")
    for rel, text in STAND_IN.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(posfeat, "hloc_extractor", sys.modules["posfeat.hloc_extractor"])
    monkeypatch.delitem(sys.modules, "posfeat.hloc_extractor")
    yield importlib.import_module("posfeat.hloc_extractor")
    for name in [m for m in sys.modules if m == "hloc" or m.startswith("hloc.")]:
        del sys.modules[name]


def test_register_makes_hloc_find_the_extractor(stand_in_hloc, weights):
    import hloc.extractors
    from hloc.utils.base_model import BaseModel, dynamic_load

    module = stand_in_hloc
    assert module.HLOC_BASE and issubclass(module.PoSFeatExtractor, BaseModel)
    cls = module.register()
    assert module.register() is cls  # idempotent
    assert dynamic_load(hloc.extractors, "posfeat") is cls and issubclass(cls, module.PoSFeatExtractor)
    conf = hloc_conf(str(weights), scales=[1.0], pyramid=False, rotations=[0])["model"]
    model = cls(conf)
    with pytest.raises(AssertionError, match="image"):
        model({})
    img = _photo()
    pred = model({"image": _as_hloc_batch(img)})
    settings = {k: v for k, v in conf.items() if k not in ("name", "weights")}
    _assert_matches(pred, 0, _expected(weights, img, settings))


def test_register_needs_hloc():
    if importlib.util.find_spec("hloc") is not None:
        pytest.skip("hloc is installed")
    from posfeat.hloc_extractor import register

    with pytest.raises(ImportError, match="hloc"):
        register()


def test_through_hloc(weights, tmp_path):
    """With hloc installed: its BaseModel, its dynamic loading and extract_features.main write the features of
    extract_posfeat (float32: ``as_half=False``)."""
    pytest.importorskip("hloc")
    import cv2
    import h5py
    import hloc.extractors
    from hloc import extract_features
    from hloc.utils.base_model import BaseModel, dynamic_load

    from posfeat.hloc_extractor import register

    cls = register()
    assert issubclass(cls, BaseModel) and dynamic_load(hloc.extractors, "posfeat") is cls
    img = _photo()
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "photo.png"), img[:, :, ::-1])
    conf = hloc_conf(str(weights), output="feats-test")
    path = extract_features.main(conf, tmp_path / "images", export_dir=tmp_path, as_half=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    want = extract_posfeat(load_model(weights, device), img, ExtractConfig.from_dict(STUDY_HPATCHES), device)
    with h5py.File(path, "r") as f:
        got = {k: f["photo.png"][k][()] for k in ("keypoints", "scores", "descriptors", "image_size")}
    np.testing.assert_allclose(got["keypoints"], want["keypoints"], rtol=0, atol=TOL)
    np.testing.assert_allclose(got["descriptors"].T, want["descriptors"], rtol=0, atol=TOL)
    assert tuple(got["image_size"]) == (img.shape[1], img.shape[0])
