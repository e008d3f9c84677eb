"""The PoSFeat model (backbone + detector head), its configuration, and one-file checkpoints."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from ..io import DataError, atomic_path
from .daisy import DaisyEncoder
from .detector import KeypointDet
from .resunet import DECODER_BLOCKS, ENCODERS, ResUNet

#: encoders of :class:`PoSFeat`: the ResUNet's (``small``, ``resnet18/34/50``) and ``daisy``
#: (:class:`~posfeat.models.daisy.DaisyEncoder`, a learnable DAISY: no decoder, no ImageNet weights)
MODEL_ENCODERS = (*ENCODERS, "daisy")

#: configuration keys of :func:`build_model` and their defaults (the paper's model)
DEFAULT_CONFIG: dict[str, Any] = {
    "encoder": "resnet50",  # resnet18/34/50 | small (a light CPU ResNet) | daisy (a learnable DAISY, no CNN)
    "pretrained": False,
    "desc_dim": 128,
    "global_map": False,   # build the unused CAPS coarse head (docs/method.md#networks)
    "decoder": None,       # U-Net decoder widths [up3, up2]; None = the encoder's (resnet: 512, 256 as the paper)
    "decoder_block": "conv",  # conv (the paper's decoder blocks) | light (conv before upsampling, separable iconv)
    "det_conv1": None,     # detector conv1 width at H/4; None = its input channels (paper)
    "det_img": 64,         # detector image-branch width (paper)
    "det_mid": 128,        # detector conv2 width at full resolution (paper)
    "input_norm": "imagenet",  # imagenet (the paper: ImageNet statistics only) | standardize (each image's
                               # channels to zero mean, unit variance first: blind to gain, offset, colour cast)
}
INPUT_NORMS = ("imagenet", "standardize")


def standardize_channels(x: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Each image's channels of ``B×C×H×W`` to zero mean and unit standard deviation (``std`` floored at
    ``eps``, in ImageNet-normalised units). Idempotent, and blind to a per-channel gain and offset."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(eps)


class PoSFeat(nn.Module):
    """``backbone`` (:class:`ResUNet`) + ``detector`` (:class:`KeypointDet`); ``config`` rebuilds it."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = resolve_config(config or {})
        self.config = cfg
        if cfg["encoder"] == "daisy":
            self.backbone: nn.Module = DaisyEncoder(int(cfg["desc_dim"]))
        else:
            self.backbone = ResUNet(cfg["encoder"], bool(cfg["pretrained"]), int(cfg["desc_dim"]),
                                    bool(cfg["global_map"]), cfg["decoder"], cfg["decoder_block"])
        in_channels = self.backbone.desc_dim + self.backbone.stem_channels
        self.detector = KeypointDet(in_channels, 1, cfg["det_conv1"], int(cfg["det_img"]), int(cfg["det_mid"]))

    def prepare(self, image_normalized: torch.Tensor) -> torch.Tensor:
        """The network's input from an ImageNet-normalised image (``config["input_norm"]``)."""
        if self.config["input_norm"] == "standardize":
            return standardize_channels(image_normalized)
        return image_normalized

    def describe(self, image_normalized: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone outputs: ``local_map`` ``B×D×H/4×W/4`` (raw) and ``local_map_small``."""
        return self.backbone(self.prepare(image_normalized))

    def detect(self, image_normalized: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Score map ``B×1×H×W`` from ``cat(local_map, local_map_small)`` (detached) and the image."""
        fmap = torch.cat([feats["local_map"], feats["local_map_small"]], dim=1).detach()
        return self.detector(fmap, self.prepare(image_normalized))

    def forward(self, image_normalized: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = dict(self.describe(image_normalized))
        feats["score"] = self.detect(image_normalized, feats)
        return feats


def resolve_config(config: dict) -> dict:
    """Fill defaults; unknown keys or a bad encoder are a ``ValueError`` naming them."""
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown model config key(s) {unknown}; allowed keys: {sorted(DEFAULT_CONFIG)}")
    cfg = {**DEFAULT_CONFIG, **config}
    if cfg["encoder"] not in MODEL_ENCODERS:
        raise ValueError(f"model config: unknown encoder {cfg['encoder']!r}; expected one of {list(MODEL_ENCODERS)}")
    if cfg["encoder"] == "daisy":
        extra = [f"{k}: {cfg[k]!r}" for k in ("pretrained", "global_map", "decoder") if cfg[k]]
        extra += [f"decoder_block: {cfg['decoder_block']!r}"] if cfg["decoder_block"] != "conv" else []
        if extra:
            raise ValueError(f"model config: the daisy encoder has no ImageNet weights, coarse head or decoder; got "
                             f"{', '.join(extra)} (set pretrained and global_map to false, decoder to null)")
    if cfg["input_norm"] not in INPUT_NORMS:
        raise ValueError(f"model config: input_norm must be one of {list(INPUT_NORMS)}, got {cfg['input_norm']!r}")
    if cfg["decoder_block"] not in DECODER_BLOCKS:
        raise ValueError(f"model config: decoder_block must be one of {list(DECODER_BLOCKS)}, got {cfg['decoder_block']!r}")
    dec = cfg["decoder"]
    if dec is not None:
        if not (isinstance(dec, (list, tuple)) and len(dec) == 2 and all(isinstance(v, int) and v > 0 for v in dec)):
            raise ValueError(f"model config: decoder must be null or two positive widths [up3, up2], got {dec!r}")
        cfg["decoder"] = [int(dec[0]), int(dec[1])]
    return cfg


def build_model(config: dict) -> PoSFeat:
    """Build :class:`PoSFeat` from a config dict with keys of :data:`DEFAULT_CONFIG` (missing → default)."""
    return PoSFeat(config)


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DataParallel / DDP
        model = model.module
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(path: str | os.PathLike, model: nn.Module, extra: dict | None = None) -> None:
    """Write ``{"config", "backbone", "detector", "extra"}`` to one ``.pt`` file, atomically.

    ``extra`` must hold only tensors, numbers, strings, lists and dicts so that the file loads with
    ``torch.load(..., weights_only=True)``.
    """
    model = _unwrap(model)
    state = {
        "config": dict(model.config),
        "backbone": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        "detector": {k: v.detach().cpu() for k, v in model.detector.state_dict().items()},
        "extra": extra if extra is not None else {},
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def _strip_prefix(state: dict, path) -> dict:
    if not isinstance(state, dict):
        raise DataError(f"{path}: state dict is a {type(state).__name__}, expected a dict of tensors")
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[PoSFeat, dict]:
    """Load a checkpoint written by :func:`save_checkpoint` → ``(model, extra)``.

    The model is rebuilt from the stored config without touching ImageNet weights (the stored state
    overwrites them). ``module.`` prefixes (DDP / DataParallel) are stripped. A missing, corrupt or
    incomplete file is a :class:`~posfeat.io.DataError` naming it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle / zip / unsupported-type errors
        raise DataError(f"{path}: not a readable PoSFeat checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or not {"config", "backbone", "detector"} <= set(state):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise DataError(f"{path}: expected a dict with keys config, backbone, detector (and extra); got {got}")
    try:
        config = resolve_config(dict(state["config"]))
        model = build_model({**config, "pretrained": False})
        model.config = config
        model.backbone.load_state_dict(_strip_prefix(state["backbone"], path))
        model.detector.load_state_dict(_strip_prefix(state["detector"], path))
    except (ValueError, RuntimeError, TypeError) as e:
        raise DataError(f"{path}: checkpoint does not match its model config ({e})") from e
    model.to(map_location)
    return model, state.get("extra") or {}
