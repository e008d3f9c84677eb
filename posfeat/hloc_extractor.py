"""PoSFeat as an hloc feature extractor (https://github.com/cvg/Hierarchical-Localization), by hloc's model contract.

An hloc extractor is a ``torch.nn.Module`` with a ``default_conf`` dict and ``required_inputs``; ``Model(conf)``
merges ``{**default_conf, **conf}`` and calls ``_init(conf)``; ``model(data)`` checks that ``data`` holds the required
inputs and returns ``_forward(data)``. :class:`PoSFeatExtractor` subclasses hloc's ``BaseModel`` when hloc is
importable, else :class:`LocalBaseModel` (the same contract), so this module works either way.

``data["image"]``: float ``B×3×H×W`` RGB in ``[0, 1]`` (hloc's ``preprocessing.grayscale: False``). Returned:
``keypoints`` ``B×N×2`` (x, y pixels, the top-left pixel centre at (0, 0)), ``scores`` ``B×N`` and ``descriptors``
``B×D×N`` (hloc's layout: D first; unit L2 columns), float32 on the image's device. The extraction is
:func:`posfeat.extraction.extract_posfeat_batch` with :class:`~posfeat.extraction.ExtractConfig` built from the conf,
whose defaults are the study's HPatches settings (:data:`STUDY_HPATCHES`).

With hloc installed::

    from hloc import extract_features
    from posfeat.hloc_extractor import hloc_conf, register

    register()  # hloc.extractors.posfeat is now this extractor
    extract_features.main(hloc_conf("models/posfeat.pt"), image_dir, export_dir)
"""

from __future__ import annotations

import copy
import sys
import types
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from posfeat.extraction.config import ExtractConfig

STUDY_HPATCHES: dict[str, Any] = {
    "max_keypoints": 8192,
    "nms_radius": 1,
    "threshold": 0.9,
    "threshold_mode": "abs",
    "scales": [1.0, 0.71, 0.5, 0.35, 0.25],
    "pyramid": True,
    "rotations": [0, -45, 45],
    "pyramid_sift_size": 2.8,
    "subpixel": "quadratic",
    "amp": False,
    "descriptor_dtype": "float16",
    "border": 1,
    "rotation_margin": 4.0,
    "batch_size": None,
}
"""The study's extraction settings for HPatches (``extract.hpatches`` of conf/config.yaml, hence params.yaml); any
other :class:`~posfeat.extraction.ExtractConfig` field keeps its default. ``descriptor_dtype`` does not apply to
hloc, which stores float16 itself (``as_half``)."""

MODEL_KEYS = ("name", "weights")
"""Conf keys that are not extraction settings: hloc's model ``name`` and the checkpoint path."""

CONFS: dict[str, dict[str, Any]] = {
    "posfeat": {
        "output": "feats-posfeat-n8192",
        "model": {"name": "posfeat", "weights": "models/posfeat.pt", **STUDY_HPATCHES},
        "preprocessing": {"grayscale": False, "resize_max": None},
    },
}
"""hloc ``extract_features`` configurations, as hloc's own ``confs``: full-resolution RGB images, the study's
checkpoint (``models/posfeat.pt``, relative to the working directory) and HPatches settings."""


class LocalBaseModel(nn.Module):
    """hloc's model contract without hloc: the conf merge, the required-input check, ``_init`` and ``_forward``."""

    default_conf: dict[str, Any] = {}
    required_inputs: list[str] = []

    def __init__(self, conf: dict[str, Any] | None = None):
        super().__init__()
        self.conf = {**self.default_conf, **(conf or {})}
        self.required_inputs = list(self.required_inputs)
        self._init(self.conf)

    def forward(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``_forward(data)`` once ``data`` holds every required input (``KeyError`` naming the first missing)."""
        for key in self.required_inputs:
            if key not in data:
                raise KeyError(f"missing key {key!r} in data")
        return self._forward(data)

    def _init(self, conf: dict[str, Any]) -> None:
        raise NotImplementedError

    def _forward(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


try:
    from hloc.utils.base_model import BaseModel
except ImportError:  # hloc is optional
    BaseModel = LocalBaseModel
HLOC_BASE = BaseModel is not LocalBaseModel
"""Whether :class:`PoSFeatExtractor` subclasses hloc's own ``BaseModel``."""


def images_from_batch(image: torch.Tensor) -> list[np.ndarray]:
    """An hloc image batch (float ``B×C×H×W`` in ``[0, 1]``, C = 3, or 1 repeated to RGB) as RGB uint8 arrays
    ``(H, W, 3)``, the input of :func:`~posfeat.extraction.extract_posfeat_batch` (hloc's images are uint8 / 255,
    so rounding recovers them exactly)."""
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"PoSFeat expects an image batch B×3×H×W (or B×1×H×W), got shape {tuple(image.shape)}")
    if image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)
    rgb = (image.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return [np.ascontiguousarray(im) for im in rgb.permute(0, 2, 3, 1).cpu().numpy()]


def stack_features(feats: list[dict[str, np.ndarray]], device: torch.device) -> dict[str, torch.Tensor]:
    """Per-image feature dicts → hloc's batched tensors: ``keypoints`` ``B×N×2``, ``scores`` ``B×N``,
    ``descriptors`` ``B×D×N``. With B > 1 every image keeps its ``N`` best keypoints, N the smallest count (the
    keypoints are sorted by score), so that the batch stacks; hloc's ``extract_features`` passes one image."""
    n = min(len(f["scores"]) for f in feats)

    def stacked(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([f[key][:n] for f in feats])).to(device=device, dtype=torch.float32)

    return {
        "keypoints": stacked("keypoints"),
        "scores": stacked("scores"),
        "descriptors": stacked("descriptors").transpose(1, 2).contiguous(),
    }


class PoSFeatExtractor(BaseModel):
    """PoSFeat for hloc; see the module docstring.

    Conf: ``weights`` (a PoSFeat checkpoint, required), hloc's ``name``, and any
    :class:`~posfeat.extraction.ExtractConfig` field (defaults: :data:`STUDY_HPATCHES`); an unknown key is a
    :class:`~posfeat.settings.UnknownSettingError` naming it. The network starts on the CPU; hloc moves the
    extractor to its device (``.to(device)``), and each batch runs where its image is.
    """

    default_conf: dict[str, Any] = {"weights": None, **STUDY_HPATCHES}
    required_inputs = ["image"]

    def _init(self, conf: dict[str, Any]) -> None:
        """Check the settings and load the checkpoint."""
        from posfeat.extraction import load_model

        if not conf.get("weights"):
            raise ValueError("posfeat hloc extractor: conf['weights'] (a PoSFeat checkpoint .pt) is required")
        settings = {k: v for k, v in conf.items() if k not in MODEL_KEYS}
        self.extract_config = ExtractConfig.from_dict(settings, what="posfeat hloc conf")
        self.net = load_model(conf["weights"], "cpu")

    def _forward(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        """PoSFeat features of the batch ``data["image"]``, stacked as hloc expects."""
        from posfeat.extraction import extract_posfeat_batch

        image = data["image"]
        feats = extract_posfeat_batch(self.net, images_from_batch(image), self.extract_config, device=image.device)
        return stack_features(feats, image.device)


def hloc_conf(weights: str, output: str | None = None, **settings: Any) -> dict[str, Any]:
    """A copy of ``CONFS["posfeat"]`` with the checkpoint ``weights``, ``output`` (the feature file's stem) and
    extraction ``settings`` (ExtractConfig fields) replaced."""
    conf = copy.deepcopy(CONFS["posfeat"])
    conf["model"].update(weights=str(weights), **settings)
    if output is not None:
        conf["output"] = output
    return conf


def register() -> type:
    """Make ``hloc.extractors.posfeat`` resolve to this extractor, so that ``extract_features.main`` finds
    ``model.name: posfeat``; returns the registered class. Idempotent; needs hloc (``ImportError`` otherwise).

    hloc loads ``hloc.extractors.<name>`` and takes the one ``BaseModel`` subclass *defined in* that module (its
    ``__module__``), so the module registered in ``sys.modules`` defines a subclass of :class:`PoSFeatExtractor`.
    """
    try:
        import hloc.extractors as extractors
        from hloc.utils.base_model import BaseModel as HlocBaseModel
    except ImportError as e:
        raise ImportError("posfeat.hloc_extractor.register() needs hloc installed") from e
    if not issubclass(PoSFeatExtractor, HlocBaseModel):
        raise RuntimeError(
            "posfeat.hloc_extractor was imported before hloc was importable, so its extractor does not subclass "
            "hloc's BaseModel; import hloc first (restart the interpreter)"
        )
    name = f"{extractors.__name__}.posfeat"
    module = sys.modules.get(name)
    if module is None or getattr(module, "_posfeat_base", None) is not PoSFeatExtractor:
        module = types.ModuleType(name, "PoSFeat (posfeat.hloc_extractor), registered by register().")
        module.PoSFeat = type("PoSFeat", (PoSFeatExtractor,), {"__module__": name, "__doc__": PoSFeatExtractor.__doc__})
        module._posfeat_base = PoSFeatExtractor
        sys.modules[name] = module
    extractors.posfeat = module
    return module.PoSFeat
