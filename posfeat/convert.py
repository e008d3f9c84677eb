"""Convert the official PoSFeat checkpoints (``backbone.pth`` + ``localheader.pth``) to our one-file format.

The official trainer saves two state dicts (possibly with DataParallel/DDP's ``module.`` prefix):

* ``backbone.pth``, its ``ResUNet``: the encoder keys (``firstconv``, ``firstbn``, ``layer1-3``) are
  torchvision's, as ours; its decoder blocks ``conv(k, s)`` name their layers ``conv``/``bn`` where ours are
  ``nn.Sequential`` indices ``0``/``1`` (``iconv3.conv.weight`` → ``iconv3.0.weight``,
  ``upconv3.conv.bn.running_mean`` → ``upconv3.conv.1.running_mean``); ``conv_coarse`` (the CAPS global
  head, unused by the method) is dropped unless ``keep_global_map``;
* ``localheader.pth``, its ``KeypointDet``: the shared PReLU is ``relu`` where ours is ``act``.

The model configuration (encoder, descriptor and detector widths) is read off the tensor shapes. Every
official tensor must find its place and every one of ours must be filled, with the same shape; otherwise a
:class:`~posfeat.io.DataError` names the file and the keys.

    python -m posfeat convert-official backbone.pth localheader.pth --out models/official.pt
    python -m posfeat extract --method posfeat --weights models/official.pt --images DIR --out feats.h5
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from posfeat.io import DataError
from posfeat.models import build_model, save_checkpoint

#: the decoder blocks whose ``conv``/``bn`` children are Sequential indices in our ResUNet
_DECODER = ("conv_coarse", "upconv3", "iconv3", "upconv2", "iconv2", "conv_fine")
_LAYER_INDEX = {"conv": "0", "bn": "1"}
_DETECTOR_RENAME = {"relu.weight": "act.weight"}
_MAX_LISTED = 12


def _listing(keys) -> str:
    keys = sorted(keys)
    more = f" … and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save`` (tensors only), ``module.`` / ``_orig_mod.`` prefixes removed.

    A dict that wraps it under ``state_dict`` (or ``model``) is accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected an official PoSFeat state dict, .pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — pickle / zip / unsupported-type errors
        raise DataError(f"{path}: not a readable PyTorch state dict ({type(e).__name__}: {e})") from e
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(
            f"{path}: expected a non-empty dict of tensors (a state_dict), got "
            f"{type(state).__name__}{' with non-tensor values' if isinstance(state, dict) and state else ''}"
        )
    out = {}
    for key, value in state.items():
        k = str(key)
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        if k in out:
            raise DataError(f"{path}: key {k!r} appears twice (with and without a 'module.' prefix)")
        out[k] = value
    return out


def map_backbone_key(key: str) -> str:
    """Official backbone key → ours (``iconv3.bn.weight`` → ``iconv3.1.weight``); encoder keys unchanged."""
    parts = key.split(".")
    if parts[0] in _DECODER and len(parts) >= 3 and parts[-2] in _LAYER_INDEX:
        parts[-2] = _LAYER_INDEX[parts[-2]]
    return ".".join(parts)


def map_detector_key(key: str) -> str:
    """Official detector key → ours (``relu.weight`` → ``act.weight``)."""
    return _DETECTOR_RENAME.get(key, key)


def _shape(state: dict, key: str, path) -> tuple[int, ...]:
    if key not in state:
        raise DataError(
            f"{path}: key {key!r} not found, so this is not an official PoSFeat state dict "
            f"of the expected part (keys found: {_listing(state)})"
        )
    return tuple(state[key].shape)


def infer_config(backbone: dict, detector: dict, backbone_path="backbone", detector_path="localheader") -> dict:
    """Our model configuration from the official tensors' shapes."""
    if "layer1.0.conv3.weight" in backbone:  # bottleneck blocks
        encoder = "resnet50"
    else:
        n3 = len({k.split(".")[1] for k in backbone if k.startswith("layer3.")})
        encoder = {2: "resnet18", 6: "resnet34"}.get(n3)
        if encoder is None:
            raise DataError(
                f"{backbone_path}: cannot tell the ResNet encoder (layer3 has {n3} blocks; "
                f"expected resnet18 (2), resnet34 (6) or resnet50 (bottleneck blocks))"
            )
    desc_dim = _shape(backbone, "conv_fine.conv.weight", backbone_path)[0]
    c1, c_in = _shape(detector, "conv1.weight", detector_path)[:2]
    img = _shape(detector, "convimg.weight", detector_path)[0]
    mid = _shape(detector, "conv2.weight", detector_path)[0]
    stem = _shape(backbone, "firstconv.weight", backbone_path)[0]
    if c_in != desc_dim + stem:
        raise DataError(
            f"{detector_path}: detector conv1 takes {c_in} channels, but the backbone "
            f"({backbone_path}) gives {desc_dim} + {stem} = {desc_dim + stem}"
        )
    return {
        "encoder": encoder,
        "pretrained": False,
        "desc_dim": int(desc_dim),
        "global_map": False,
        "det_conv1": None if c1 == c_in else int(c1),
        "det_img": int(img),
        "det_mid": int(mid),
    }


def _match(mapped: dict, expected: dict, path, what: str) -> None:
    missing = set(expected) - set(mapped)
    unexpected = set(mapped) - set(expected)
    bad_shape = [
        f"{k} {tuple(mapped[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in sorted(set(mapped) & set(expected))
        if tuple(mapped[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys (our names): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys (after renaming): {_listing(unexpected)}")
    if bad_shape:
        problems.append(f"shape mismatches: {_listing(bad_shape)}")
    if problems:
        raise DataError(f"{path}: does not match an official PoSFeat {what}: " + "; ".join(problems))


def convert_official(
    backbone_path: str | os.PathLike,
    detector_path: str | os.PathLike,
    out: str | os.PathLike,
    keep_global_map: bool = False,
) -> dict:
    """Convert ``backbone.pth`` + ``localheader.pth`` into ``out`` (the format of ``models/posfeat.pt``).

    Returns the model configuration written. The output loads with ``torch.load(weights_only=True)`` and
    :func:`posfeat.models.load_checkpoint`.
    """
    backbone = load_state_dict(backbone_path)
    detector = load_state_dict(detector_path)
    config = infer_config(backbone, detector, backbone_path, detector_path)
    has_global = any(k.startswith("conv_coarse.") for k in backbone)
    config["global_map"] = bool(keep_global_map and has_global)
    if keep_global_map and not has_global:
        raise DataError(f"{backbone_path}: keep_global_map asked, but there are no conv_coarse.* keys")
    mapped_b = {
        map_backbone_key(k): v for k, v in backbone.items() if config["global_map"] or not k.startswith("conv_coarse.")
    }
    mapped_d = {map_detector_key(k): v for k, v in detector.items()}
    model = build_model(config)
    _match(mapped_b, model.backbone.state_dict(), backbone_path, "backbone (ResUNet, backbone.pth)")
    _match(mapped_d, model.detector.state_dict(), detector_path, "detector (KeypointDet, localheader.pth)")
    ours_b = model.backbone.state_dict()
    model.backbone.load_state_dict({k: v.to(ours_b[k].dtype) for k, v in mapped_b.items()})
    model.detector.load_state_dict({k: v.float() for k, v in mapped_d.items()})
    dropped = [] if config["global_map"] else sorted(k for k in backbone if k.startswith("conv_coarse."))
    save_checkpoint(
        out,
        model,
        extra={
            "source": "official PoSFeat",
            "backbone": os.fspath(backbone_path),
            "localheader": os.fspath(detector_path),
            "dropped": dropped,
        },
    )
    return config
