"""The stage configuration: its keys, defaults and types, the check, and what it builds (optimiser, loss).

A stage configuration is ``params.yaml``'s ``train_desc`` / ``train_kp``. :func:`check_stage_config`
validates it where it is read (a wrong key or type is a :class:`~posfeat.utils.ParamError` naming
``train_<stage>.<key>``) and fills in :data:`OPTIONAL`; :func:`make_optimizer` and :func:`build_loss` turn it
into the objects of a run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from posfeat.utils import ParamError, check_params

STAGES = ("desc", "kp")

COMMON_KEYS = (
    "image_size",
    "batch_size",
    "epochs",
    "steps_per_epoch",
    "lr_decay_step",
    "lr_gamma",
    "log_every",
    "vis_every",
    "checkpoint_every",
)
STAGE_KEYS = {
    "desc": ("grid_size", "line_step", "window_size", "temperature", "win_cost_thr"),
    "kp": ("grid_size", "temperature", "reward_thr", "good_reward", "bad_reward", "kp_penalty"),
}
#: optional keys and their defaults
OPTIONAL = {
    "color_jitter": None,  # (brightness, contrast, saturation, hue) or None
    "rotation": 0.0,  # degrees: second image's in-plane camera rotation, uniform in ±rotation
    "scale": (1.0, 1.0),  # (min, max): second image's zoom, log-uniform (exact view augmentation)
    "crop": (1.0, 1.0),  # (min, max) resolution factor, log-uniform: each pair is resized to factor × image_size
    # (at most its own size) and one image_size window at a random relative position is
    # cut from both images (K exact); (1, 1) = the whole image resized (the paper)
    "grayscale": 0.0,  # probability that a training image is turned grey (after the colour jitter)
    "night": 0.0,  # probability that a training image gets a night look (dim, tinted, noisy)
    "num_workers": 0,
    "amp": False,  # opt-in autocast (posfeat.utils.autocast_dtype): CUDA bf16 where supported, else
    # fp16 + GradScaler; a CPU bf16 where native; off = float32, as the official code
    "freeze_bn": False,  # BatchNorm of the trained backbone in eval mode (running statistics)
    "backbone_passes": 2,  # stage 1: 2 = backbone on image 1, then on image 2 (the official code's
    # BatchNorm batches and running-average updates); 1 = one pass over both
    "stable_sigma": False,  # stage 1: centred variance for the loss's σ (off = the official formula)
    "vis_pairs": 4,  # fixed validation pairs drawn for the visualisations
    "vis_keypoints": 512,  # keypoints per image in the match visualisation
    "metrics_window": 20,  # final metrics average the last N steps
}
#: keys that do not change the trajectory (so they may change between a run and its resume)
NOT_FINGERPRINTED = {
    "log_every",
    "vis_every",
    "checkpoint_every",
    "num_workers",
    "epochs",
    "vis_pairs",
    "vis_keypoints",
    "metrics_window",
}
#: the type of every configuration key, checked where the configuration is read (a wrong type is a ParamError
#: naming ``train_<stage>.<key>``, never a late ``int()`` failure)
KEY_TYPES: dict[str, Any] = {
    "image_size": tuple[int, int],
    "color_jitter": list[float] | None,
    "amp": bool,
    "freeze_bn": bool,
    "lr_gamma": float,
    "window_size": float,
    "temperature": float,
    "win_cost_thr": float,
    "reward_thr": float,
    "good_reward": float,
    "bad_reward": float,
    "kp_penalty": float,
    "optimizer": str,
    "lr": float,
    "rotation": float,
    "scale": tuple[float, float],
    "crop": tuple[float, float],
    "grayscale": float,
    "night": float,
    "backbone_passes": int,
    "stable_sigma": bool,
    **{
        k: int
        for k in (
            "batch_size",
            "epochs",
            "steps_per_epoch",
            "lr_decay_step",
            "log_every",
            "vis_every",
            "checkpoint_every",
            "grid_size",
            "line_step",
            "num_workers",
            "vis_pairs",
            "vis_keypoints",
            "metrics_window",
        )
    },
}


def check_stage_config(stage: str, cfg: dict) -> dict:
    """Validate a stage configuration; returns it with optional keys filled in."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    missing = [k for k in COMMON_KEYS + STAGE_KEYS[stage] if k not in cfg]
    if missing:
        raise ParamError(f"train_{stage} configuration lacks {missing}")
    out = {**OPTIONAL, **cfg}
    check_params(out, KEY_TYPES, f"train_{stage}")
    w, h = (int(v) for v in out["image_size"])
    if w % 16 or h % 16:
        raise ParamError(f"train_{stage}.image_size must be multiples of 16, got {w}x{h}")
    for k in ("batch_size", "epochs", "steps_per_epoch", "lr_decay_step", "log_every", "vis_every", "checkpoint_every"):
        if int(out[k]) < 1:
            raise ParamError(f"train_{stage}.{k} must be >= 1, got {out[k]}")
    if out["backbone_passes"] not in (1, 2):
        raise ParamError(f"train_{stage}.backbone_passes must be 1 or 2, got {out['backbone_passes']!r}")
    for k in ("amp", "freeze_bn", "stable_sigma"):
        if not isinstance(out[k], bool):
            raise ParamError(f"train_{stage}.{k} must be true or false, got {out[k]!r}")
    return out


#: the optimizers a training stage can use
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


def check_optimizer(name: object, key: str) -> str:
    """``name`` if it is one of :data:`OPTIMIZERS`, else a :class:`ParamError` naming ``key`` and the fix."""
    if name not in OPTIMIZERS:
        raise ParamError(
            f"params.yaml: {key} = {name!r}: expected one of {', '.join(OPTIMIZERS)} "
            f"(e.g. dvc exp run -S {key}={OPTIMIZERS[-1]})"
        )
    return str(name)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """``adam`` (default betas, no weight decay) or ``sgd`` (momentum 0, no weight decay)."""
    check_optimizer(name, "optimizer")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=0.0)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def build_loss(stage: str, cfg: dict) -> nn.Module:
    """The stage's loss module from its configuration."""
    if stage == "desc":
        from posfeat.losses.line2window import Line2WindowLoss

        return Line2WindowLoss(
            grid_size=int(cfg["grid_size"]),
            line_step=int(cfg["line_step"]),
            window_size=float(cfg["window_size"]),
            temperature=float(cfg["temperature"]),
            win_cost_thr=float(cfg["win_cost_thr"]),
            stable_sigma=bool(cfg.get("stable_sigma", False)),
        )
    from posfeat.losses.reinforce import ReinforceLoss

    return ReinforceLoss(
        grid_size=int(cfg["grid_size"]),
        temperature=float(cfg["temperature"]),
        reward_thr=float(cfg["reward_thr"]),
        good_reward=float(cfg["good_reward"]),
        bad_reward=float(cfg["bad_reward"]),
        kp_penalty=float(cfg["kp_penalty"]),
    )
