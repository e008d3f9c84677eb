"""The PoSFeat model (backbone + detector head), its configuration, and one-file checkpoints."""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from ..io import DataError, atomic_path
from .config import ModelConfig, resolve_config
from .daisy import DaisyEncoder
from .detector import KeypointDet
from .resunet import ResUNet


def standardize_channels(x: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Each image's channels of ``B×C×H×W`` to zero mean and unit standard deviation (``std`` floored at
    ``eps``, in ImageNet-normalised units). Idempotent, and blind to a per-channel gain and offset."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(eps)


class PoSFeat(nn.Module):
    """``backbone`` (:class:`ResUNet`) + ``detector`` (:class:`KeypointDet`); ``config`` rebuilds it."""

    def __init__(self, config: dict | ModelConfig | None = None):
        super().__init__()
        cfg = resolve_config(config or {})
        self.config = cfg
        if cfg["encoder"] == "daisy":
            self.backbone: nn.Module = DaisyEncoder(int(cfg["desc_dim"]))
        else:
            self.backbone = ResUNet(
                cfg["encoder"],
                bool(cfg["pretrained"]),
                int(cfg["desc_dim"]),
                bool(cfg["global_map"]),
                cfg["decoder"],
                cfg["decoder_block"],
            )
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


def build_model(config: dict | ModelConfig) -> PoSFeat:
    """Build :class:`PoSFeat` from a :class:`ModelConfig` or a dict of its fields (missing → default)."""
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
                k = k[len(prefix) :]
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
