"""The trainer of both PoSFeat stages (ALGORITHM.md §2.4, §3; DESIGN.md §1, §5).

``train(stage="desc", …)`` trains the backbone with the line-to-window epipolar loss (the detector is
not even run); ``train(stage="kp", …)`` loads the stage-1 checkpoint, freezes the backbone (eval mode,
``no_grad``) and trains the detector head with the REINFORCE loss.

Reproducibility and resume
    The data of step ``s`` (pair order, colour jitter) and the loss's random sampling are pure
    functions of ``(seed, s, position in the global batch)``; see :func:`posfeat.data.pairs.global_batch`.
    Every ``checkpoint_every`` steps ``ckpt_dir/last.pt`` receives model, optimiser, scheduler, AMP
    scaler, step, RNG states and the per-step history, atomically and ``weights_only``-loadable. A rerun
    with the same configuration continues from it and, on CPU, ends with weights *equal* to those of an
    uninterrupted run. A checkpoint written under another configuration (fingerprint) is ignored.

Distributed training
    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised (gloo on CPU, nccl on CUDA),
    the trained module is wrapped in ``DistributedDataParallel`` and each rank takes its slice of the
    same seeded global batch. The losses are computed per sample with per-sample generators and
    reduced so that loss and gradient equal those of one process on the global batch: the stage-1 loss
    is a weighted mean pooled over the batch (``Σ m·s·c / Σ m·s`` per direction), so numerators and the
    (constant) denominators are all-reduced; the stage-2 loss is a plain sum over pairs. BatchNorm uses
    ``SyncBatchNorm`` on CUDA; on CPU PyTorch has no SyncBatchNorm, so each rank normalises with its own
    batch statistics (the only difference from one process; ``freeze_bn`` removes it). Only rank 0 logs
    and writes files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from posfeat.data.pairs import PairDataset, StepBatchSampler, derive_seed
from posfeat.io import DataError, atomic_path
from posfeat.models import build_model, load_checkpoint, normalize_image, save_checkpoint
from posfeat.utils import ParamError, check_params, get_logger, resolve_device, seed_everything

logger = get_logger(__name__)

STAGES = ("desc", "kp")
CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1

COMMON_KEYS = ("image_size", "batch_size", "epochs", "steps_per_epoch", "lr_decay_step", "lr_gamma",
               "log_every", "vis_every", "checkpoint_every")
STAGE_KEYS = {
    "desc": ("grid_size", "line_step", "window_size", "temperature", "win_cost_thr"),
    "kp": ("grid_size", "temperature", "reward_thr", "good_reward", "bad_reward", "kp_penalty"),
}
#: optional keys and their defaults
OPTIONAL = {
    "color_jitter": None,      # (brightness, contrast, saturation, hue) or None
    "rotation": 0.0,           # degrees: second image's in-plane camera rotation, uniform in ±rotation
    "scale": (1.0, 1.0),       # (min, max): second image's zoom, log-uniform (exact view augmentation)
    "num_workers": 0,
    "amp": False,              # opt-in: autocast on CUDA (bf16 where supported, else fp16 + GradScaler);
                               # off = float32, as the official code trains
    "freeze_bn": False,        # BatchNorm of the trained backbone in eval mode (running statistics)
    "backbone_passes": 2,      # stage 1: 2 = backbone on image 1, then on image 2 (the official code's
                               # BatchNorm batches and running-average updates); 1 = one pass over both
    "stable_sigma": False,     # stage 1: centred variance for the loss's σ (off = the official formula)
    "vis_pairs": 4,            # fixed validation pairs drawn for the visualisations
    "vis_keypoints": 512,      # keypoints per image in the match visualisation
    "metrics_window": 20,      # final metrics average the last N steps
}
#: keys that do not change the trajectory (so they may change between a run and its resume)
NOT_FINGERPRINTED = {"log_every", "vis_every", "checkpoint_every", "num_workers", "epochs", "vis_pairs",
                     "vis_keypoints", "metrics_window"}
#: the type of every configuration key, checked where the configuration is read (a wrong type is a ParamError
#: naming ``train_<stage>.<key>``, never a late ``int()`` failure)
KEY_TYPES: dict[str, Any] = {
    "image_size": tuple[int, int], "color_jitter": list[float] | None, "amp": bool, "freeze_bn": bool,
    "lr_gamma": float, "window_size": float, "temperature": float, "win_cost_thr": float, "reward_thr": float,
    "good_reward": float, "bad_reward": float, "kp_penalty": float, "optimizer": str, "lr": float,
    "rotation": float, "scale": tuple[float, float], "backbone_passes": int, "stable_sigma": bool,
    **{k: int for k in ("batch_size", "epochs", "steps_per_epoch", "lr_decay_step", "log_every", "vis_every",
                        "checkpoint_every", "grid_size", "line_step", "num_workers", "vis_pairs", "vis_keypoints",
                        "metrics_window")},
}


# ================================================================================ configuration
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
        raise ParamError(f"train_{stage}.image_size must be multiples of 16 (ALGORITHM.md §7.3), got {w}x{h}")
    for k in ("batch_size", "epochs", "steps_per_epoch", "lr_decay_step", "log_every", "vis_every", "checkpoint_every"):
        if int(out[k]) < 1:
            raise ParamError(f"train_{stage}.{k} must be >= 1, got {out[k]}")
    if out["backbone_passes"] not in (1, 2):
        raise ParamError(f"train_{stage}.backbone_passes must be 1 or 2, got {out['backbone_passes']!r}")
    for k in ("amp", "freeze_bn", "stable_sigma"):
        if not isinstance(out[k], bool):
            raise ParamError(f"train_{stage}.{k} must be true or false, got {out[k]!r}")
    return out


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """``adam`` (default betas, no weight decay) or ``sgd`` (momentum 0, no weight decay)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=0.0)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def build_loss(stage: str, cfg: dict) -> nn.Module:
    """The stage's loss module from its configuration."""
    if stage == "desc":
        from posfeat.losses.line2window import Line2WindowLoss

        return Line2WindowLoss(grid_size=int(cfg["grid_size"]), line_step=int(cfg["line_step"]),
                               window_size=float(cfg["window_size"]), temperature=float(cfg["temperature"]),
                               win_cost_thr=float(cfg["win_cost_thr"]),
                               stable_sigma=bool(cfg.get("stable_sigma", False)))
    from posfeat.losses.reinforce import ReinforceLoss

    return ReinforceLoss(grid_size=int(cfg["grid_size"]), temperature=float(cfg["temperature"]),
                         reward_thr=float(cfg["reward_thr"]), good_reward=float(cfg["good_reward"]),
                         bad_reward=float(cfg["bad_reward"]), kp_penalty=float(cfg["kp_penalty"]))


def _file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


TRAINING_CODE = ("training.py", "geometry.py", "data/pairs.py", "models", "losses")
"""Library files whose code decides a training trajectory (relative to the ``posfeat`` package)."""


def code_digest() -> str:
    """sha256 over the source of :data:`TRAINING_CODE`, part of the checkpoint fingerprint.

    DVC reruns a training stage when its code changes; without this, the rerun would find the previous run's
    final checkpoint under the same parameters and "resume" at its last step instead of training anew.
    """
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for rel in TRAINING_CODE:
        path = pkg / rel
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + _file_digest(f).encode())
    return h.hexdigest()


def fingerprint(**parts: Any) -> str:
    """sha256 of the JSON of everything that determines the training trajectory."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ==================================================================================== distributed
class DistInfo:
    """Rank, world size and whether this process initialised the process group."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, owner: bool = False):
        self.rank, self.world_size, self.local_rank, self.owner = rank, world_size, local_rank, owner

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Initialise ``torch.distributed`` when launched by ``torchrun`` with ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, owner=False)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, owner=True)


def _all_reduce(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t)
    return t


# ======================================================================================= RNG state
def rng_state() -> dict:
    """torch / NumPy / Python (and CUDA) RNG states as tensors and numbers (``weights_only``-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": float("nan") if py_state[2] is None else float(py_state[2])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    gauss = None if math.isnan(p["gauss"]) else p["gauss"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ================================================================================= stage forward
class StageForward(nn.Module):
    """What one training step runs through the network (the module DDP wraps).

    ``desc``: ``describe`` on both images (detector not run) → ``(local_map1, local_map2)``. With
    ``backbone_passes=2`` (default) the backbone runs on image 1, then on image 2, as the official code's
    ``extract(im1)``, ``extract(im2)``: in train mode each BatchNorm normalises with the statistics of B
    images and updates its running averages twice per step. ``backbone_passes=1`` runs one pass over
    ``cat([im1, im2])`` (statistics of 2B images, one update per step); with frozen BatchNorm
    (``freeze_bn``) both give the same outputs.
    ``kp``: backbone under ``no_grad`` (frozen, eval mode), then the detector (instance norms only, so
    per-image) on both images at once → ``(local_map1, local_map2, score1, score2)``.
    """

    def __init__(self, model: nn.Module, stage: str, backbone_passes: int = 2):
        super().__init__()
        if backbone_passes not in (1, 2):
            raise ValueError(f"backbone_passes must be 1 or 2, got {backbone_passes!r}")
        self.model = model
        self.stage = stage
        self.backbone_passes = int(backbone_passes)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = image1.shape[0]
        if self.stage == "desc" and self.backbone_passes == 2:
            return (self.model.describe(normalize_image(image1))["local_map"],
                    self.model.describe(normalize_image(image2))["local_map"])
        x = normalize_image(torch.cat([image1, image2], 0))
        if self.stage == "desc":
            fmap = self.model.describe(x)["local_map"]
            return fmap[:b], fmap[b:]
        with torch.no_grad():
            feats = self.model.describe(x)
        score = self.model.detect(x, feats)
        fmap = feats["local_map"]
        return fmap[:b], fmap[b:], score[:b], score[b:]


def set_train_modes(model: nn.Module, stage: str, freeze_bn: bool = False) -> None:
    """Stage 1: backbone in train mode (BN batch statistics unless ``freeze_bn``); stage 2: backbone
    in eval mode, detector in train mode (ALGORITHM.md §2.4, §3)."""
    model.eval()
    if stage == "desc":
        model.backbone.train()
        if freeze_bn:
            for m in model.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
    else:
        model.detector.train()


def trainable_module(model: nn.Module, stage: str) -> nn.Module:
    return model.backbone if stage == "desc" else model.detector


# ================================================================================= loss reduction
def _to_float(v) -> float | None:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean()) if v.numel() else None
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        return float(v)
    return None


def sample_generator(seed: int, step: int, position: int, device: torch.device) -> torch.Generator:
    """The loss's random source for the sample at ``position`` of global batch ``step``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, step, position, 0x1055))
    return gen


def _desc_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, info):
    """Stage 1: per-sample draws, then the pooled weighted mean ``Σ m·s·c / Σ m·s`` per direction.

    The denominators (detached in the original too) are all-reduced, so each rank back-propagates
    ``num_r / den_global``: summed over ranks this is exactly the single-process loss.
    """
    from posfeat.losses.line2window import _search_direction, draw_jitter, sample_grid_points

    fmap1, fmap2 = outputs[0].float(), outputs[1].float()
    width, height = image_size
    device = fmap1.device
    draws = [[], [], [], []]
    for i in range(fmap1.shape[0]):  # the draw order of Line2WindowLoss.forward with B = 1
        gen = sample_generator(seed, step, first_position + i, device)
        p1 = sample_grid_points(1, height, width, loss_fn.grid_size, gen, device)
        p2 = sample_grid_points(1, height, width, loss_fn.grid_size, gen, device)
        draws[0].append(p1)
        draws[1].append(p2)
        draws[2].append(draw_jitter(1, p1.shape[1], loss_fn.window_size, gen, device))
        draws[3].append(draw_jitter(1, p2.shape[1], loss_fn.window_size, gen, device))
    pts1, pts2, jit1, jit2 = (torch.cat(d, 0) for d in draws)
    kw = dict(line_step=loss_fn.line_step, window_size=loss_fn.window_size, temperature=loss_fn.temperature,
              impl="fast", stable_sigma=loss_fn.stable_sigma)
    thr = loss_fn.win_cost_thr * min(width, height)
    nums, local = [], []
    with torch.autocast(device_type=device.type, enabled=False):
        for fq, ft, pts, Fqt, jit in ((fmap1, fmap2, pts1, F12, jit1), (fmap2, fmap1, pts2, F21, jit2)):
            d = _search_direction(fq, ft, pts, Fqt, (width, height), jit, **kw)
            cost = torch.nan_to_num(d["cost"], nan=0.0, posinf=0.0, neginf=0.0)  # masked below anyway
            mask = (d["cost"].detach() < thr) & d["valid"] & torch.isfinite(d["cost"].detach())
            s = 1.0 / torch.nan_to_num(d["sigma"].detach(), nan=1.0).clamp_min(1e-10)
            ms = s * mask
            num = (ms * torch.where(mask, cost, torch.zeros_like(cost))).sum()
            nums.append(num)
            local += [ms.sum() + 1e-8 * s.sum(), num.detach(), mask.sum(), d["valid"].sum(),
                      float(mask.numel()), (cost.detach() * mask).sum(), d["sigma"].detach().sum()]
    sums = torch.stack([torch.as_tensor(v, device=device, dtype=torch.float64) for v in local])
    sums = _all_reduce(sums, info)
    (den1, num1, m1, v1, n1, c1, s1), (den2, num2, m2, v2, n2, c2, s2) = sums[:7], sums[7:]
    objective = (nums[0] / den1.float() + nums[1] / den2.float()) * info.world_size
    loss_w1, loss_w2 = float(num1 / den1), float(num2 / den2)
    stats = {
        "loss_w1": loss_w1,
        "loss_w2": loss_w2,
        "percent_w": float((m1 + m2) / (n1 + n2)),
        "percent_valid": float((v1 + v2) / (n1 + n2)),
        "cost_mean": float((c1 + c2) / (m1 + m2).clamp_min(1)),
        "sigma_mean": float((s1 + s2) / (n1 + n2)),
    }
    return objective, loss_w1 + loss_w2, stats


def _kp_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, global_batch_size, info):
    """Stage 2: per-sample REINFORCE losses summed over the global batch (no normalisation, as the original)."""
    device = outputs[0].device
    total = outputs[0].new_zeros((), dtype=torch.float32)
    names: list[str] = []
    local: list[float] = []
    for i in range(outputs[0].shape[0]):
        gen = sample_generator(seed, step, first_position + i, device)
        sl = slice(i, i + 1)
        res = loss_fn.terms(outputs[2][sl].float(), outputs[3][sl].float(), outputs[0][sl].float(),
                            outputs[1][sl].float(), F12[sl], F21[sl], image_size=image_size, generator=gen)
        total = total + res["loss"]
        vals = {k: _to_float(v) for k, v in res["stats"].items()}
        vals = {k: v for k, v in vals.items() if v is not None}
        if not names:
            names = sorted(vals)
        local.append([vals.get(k, float("nan")) for k in names])
    sums = torch.tensor(local, dtype=torch.float64, device=device).sum(0)
    sums = _all_reduce(torch.cat([sums, total.detach().double().reshape(1)]), info)
    stats = {k: float(v) / global_batch_size for k, v in zip(names, sums[:-1].tolist())}
    stats.pop("loss", None)
    return total * info.world_size, float(sums[-1]), stats


def compute_objective(
    stage: str,
    loss_fn: nn.Module,
    outputs: tuple[torch.Tensor, ...],
    batch: dict,
    image_size: tuple[int, int],
    seed: int,
    step: int,
    first_position: int,
    global_batch_size: int,
    info: DistInfo,
) -> tuple[torch.Tensor, float, dict[str, float]]:
    """Loss of this rank's slice, reduced so that DDP's gradient averaging gives the global gradient.

    Each sample gets its own loss generator seeded by ``(seed, step, global position)``
    (:func:`sample_generator`), so the numbers do not depend on how the global batch is split.

    Returns:
        ``(objective, loss, stats)``: ``objective`` is what this rank back-propagates (already
        multiplied by the world size to undo DDP's gradient averaging); ``loss`` is the global loss value
        (identical on every rank); ``stats`` are global statistics (stage 1: pooled over the batch as the
        loss; stage 2: means over the pairs).
    """
    device = outputs[0].device
    F12 = batch["F12"].to(device=device, dtype=torch.float32)
    F21 = batch["F21"].to(device=device, dtype=torch.float32)
    if stage == "desc":
        return _desc_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, info)
    return _kp_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, global_batch_size, info)


# ================================================================================ visualisation
class Visualizer:
    """Fixed validation pairs, rendered every ``vis_every`` steps (ALGORITHM.md §6).

    Per pair: the two score maps (``coolwarm``, normalised by their max; stage 2 only: in stage 1 the
    detector is untrained and not run) and the mutual-NN matches of descriptors sampled at keypoints (stage 1: OpenCV SIFT;
    stage 2: the detector's top-``k`` NMS maxima), coloured by epipolar error (green 0 px, red ≥ 5 px).
    Returns the images and the mean match statistics (logged as ``val/…``).
    """

    def __init__(self, dataset: PairDataset, stage: str, num_pairs: int, num_keypoints: int, seed: int):
        self.stage = stage
        self.num_keypoints = int(num_keypoints)
        n = min(int(num_pairs), len(dataset))
        order = np.random.default_rng([int(seed), 0x715]).permutation(len(dataset))[:n] if n else []
        self.samples = [dataset[(int(i), derive_seed(seed, int(i), 0x715))] for i in order]
        self.sift = {}

    @torch.no_grad()
    def __call__(self, model: nn.Module, device: torch.device) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        from posfeat.visualize import match_visualization, score_maps_image, sift_keypoints, to_uint8, topk_keypoints

        was_training = model.training
        model.eval()
        images, stats = {}, []
        try:
            for i, s in enumerate(self.samples):
                x = normalize_image(torch.stack([s["image1"], s["image2"]]).to(device))
                feats = model.describe(x)
                fmap = feats["local_map"].float()
                score = model.detect(x, feats).float() if self.stage == "kp" else None
                if self.stage == "desc":
                    if i not in self.sift:
                        self.sift[i] = [torch.from_numpy(sift_keypoints(to_uint8(im), self.num_keypoints))
                                        for im in (s["image1"], s["image2"])]
                    kp1, kp2 = self.sift[i]
                else:
                    kp1, kp2 = (topk_keypoints(score[k, 0], self.num_keypoints) for k in (0, 1))
                if len(kp1) and len(kp2):
                    pic, st = match_visualization(s["image1"], s["image2"], fmap[0], fmap[1], kp1, kp2, s["F12"])
                    images[f"pair{i}_matches.png"] = pic
                    stats.append(st)
                if score is not None:
                    images[f"pair{i}_scores.png"] = score_maps_image(score[0, 0], score[1, 0])
        finally:
            model.train(was_training)
        mean = {}
        for k in ("matches", "precision", "median_error"):
            vals = [st[k] for st in stats if math.isfinite(st[k])]
            if vals:
                mean[f"val/{k}"] = float(np.mean(vals))
        return images, mean


# =================================================================================== checkpoint
def _save_training_state(path: Path, state: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def _load_training_state(path: Path, fp: str) -> dict | None:
    """The resumable state at ``path`` if it was written under fingerprint ``fp``; ``None`` otherwise."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — an unreadable checkpoint must not block training
        logger.warning("%s: unreadable training checkpoint (%s: %s); starting from scratch", path, type(e).__name__, e)
        return None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        logger.warning("%s: not a training checkpoint of format %d; starting from scratch", path, CHECKPOINT_FORMAT)
        return None
    if state.get("fingerprint") != fp:
        logger.warning("%s was written under another configuration; starting from scratch", path)
        return None
    return state


# ===================================================================================== logging
class _Logger:
    """DVCLive on rank 0 (``dvcyaml=False``, no DVC experiment of its own); nothing elsewhere.

    On resume the directory is rebuilt: DVCLive clears its plots, the logged rows kept in the
    checkpoint are replayed, and the images up to the checkpoint's step are restored, so the logs
    equal those of an uninterrupted run.
    """

    def __init__(self, live_dir: Path | None, enabled: bool, rows: list[dict], resume_step: int):
        self.live = None
        if not enabled or live_dir is None:
            return
        from dvclive import Live

        img_dir = Path(live_dir) / "plots" / "images"
        keep = {}
        if resume_step > 0 and img_dir.is_dir():
            for p in img_dir.iterdir():
                try:
                    if p.is_file() and int(p.name.split("_", 1)[0]) <= resume_step:
                        keep[p.name] = p.read_bytes()
                except ValueError:
                    continue
        self.live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=False)
        img_dir.mkdir(parents=True, exist_ok=True)
        for name, data in keep.items():
            (img_dir / name).write_bytes(data)
        for row in rows:
            self._write(row)

    def _write(self, row: dict) -> None:
        self.live.step = int(row["step"])
        for k, v in row.items():
            if k != "step" and v is not None and math.isfinite(v):
                self.live.log_metric(k, float(v))
        self.live.make_summary()

    def metrics(self, row: dict) -> None:
        if self.live is not None:
            self._write(row)

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        if self.live is not None:
            for name, img in images.items():
                self.live.log_image(f"{step:07d}_{name}", img)

    def end(self) -> None:
        if self.live is not None:
            self.live.end()


def _window_mean(records: list[dict]) -> dict[str, float]:
    keys = {k for r in records for k in r} - {"step"}
    out = {}
    for k in sorted(keys):
        vals = [r[k] for r in records if k in r and r[k] is not None and math.isfinite(r[k])]
        if vals:
            out[k] = float(np.mean(vals))
    return out


# ========================================================================================= train
class TrainingInterrupted(RuntimeError):
    """Raised by :func:`train` when ``stop_after`` steps have run (simulates a killed run)."""


def train(
    stage: str,
    index: str | os.PathLike | dict,
    cfg: dict,
    *,
    out_model: str | os.PathLike,
    ckpt_dir: str | os.PathLike,
    live_dir: str | os.PathLike | None = None,
    metrics_path: str | os.PathLike | None = None,
    model_config: dict | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    optimizer: str = "adam",
    lr: float = 1e-4,
    seed: int = 0,
    device: str = "auto",
    stop_after: int | None = None,
    progress: bool = True,
) -> dict:
    """Train one stage and write its final model (atomically); returns the final metrics.

    Args:
        stage: ``"desc"`` (backbone, line-to-window loss; the detector is not run) or ``"kp"`` (detector,
            REINFORCE; the backbone from ``init_checkpoint`` is frozen and run under ``no_grad``).
        index: the prepared pair index (path or dict; see :mod:`posfeat.data.pairs`).
        cfg: the stage configuration (``params.yaml``'s ``train_desc`` / ``train_kp``; see
            :data:`COMMON_KEYS`, :data:`STAGE_KEYS`, :data:`OPTIONAL`).
        out_model: final checkpoint (:func:`posfeat.models.save_checkpoint` format).
        ckpt_dir: where ``last.pt`` (the resumable state) lives.
        live_dir: DVCLive directory (``None``: no logs).
        metrics_path: final metrics JSON (``None``: not written).
        model_config: :func:`posfeat.models.build_model` configuration (stage 1).
        init_checkpoint: the stage-1 model (stage 2, required).
        optimizer, lr: ``adam`` | ``sgd`` and its learning rate.
        seed: everything random derives from it.
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` (under ``torchrun``: ``cuda:LOCAL_RANK``).
        stop_after: raise :class:`TrainingInterrupted` after this many steps of *this* call (tests).
        progress: show a tqdm bar (rank 0).
    """
    cfg = check_stage_config(stage, cfg)
    dev = resolve_device(device)
    info = init_distributed(dev)
    try:
        if info.enabled and dev.type == "cuda":
            dev = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(dev)
        return _train(stage, index, cfg, dev, info, Path(out_model), Path(ckpt_dir),
                      None if live_dir is None else Path(live_dir),
                      None if metrics_path is None else Path(metrics_path),
                      model_config, init_checkpoint, optimizer, float(lr), int(seed), stop_after, progress)
    finally:
        if info.owner:
            dist.destroy_process_group()


def _train(stage, index, cfg, dev, info, out_model, ckpt_dir, live_dir, metrics_path, model_config,
           init_checkpoint, optimizer, lr, seed, stop_after, progress) -> dict:
    W, H = (int(v) for v in cfg["image_size"])
    bsz = int(cfg["batch_size"])
    spe = int(cfg["steps_per_epoch"])
    total_steps = int(cfg["epochs"]) * spe
    if bsz % info.world_size:
        raise ValueError(f"train_{stage}.batch_size {bsz} is not divisible by the {info.world_size} processes")

    # ---------------------------------------------------------------- data
    if isinstance(index, dict):
        index_digest = hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()
    else:
        index_digest = _file_digest(index)
    train_set = PairDataset(index, "train", (W, H), cfg["color_jitter"], seed, float(cfg["rotation"]),
                            tuple(cfg["scale"]))
    if len(train_set) == 0:
        raise DataError(f"{index if not isinstance(index, dict) else 'index'}: no training pairs")
    val_set = PairDataset(index, "val", (W, H), None, seed)
    if len(val_set) == 0:
        val_set = PairDataset(index, "train", (W, H), None, seed)

    # --------------------------------------------------------------- model
    seed_everything(seed)
    if stage == "desc":
        model = build_model(dict(model_config or {}))
        init_digest = None
    else:
        if init_checkpoint is None:
            raise ValueError("stage 'kp' needs init_checkpoint (the stage-1 model, models/desc.pt)")
        model, _ = load_checkpoint(init_checkpoint, map_location="cpu")
        init_digest = _file_digest(init_checkpoint)
    model.to(dev)
    trained = trainable_module(model, stage)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained.parameters():
        p.requires_grad_(True)
    if info.enabled and dev.type == "cuda":
        model.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    loss_fn = build_loss(stage, cfg)
    opt = make_optimizer(optimizer, [p for p in trained.parameters()], lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(cfg["lr_decay_step"]), gamma=float(cfg["lr_gamma"]))
    use_amp = bool(cfg["amp"]) and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    fp = fingerprint(stage=stage, cfg={k: v for k, v in cfg.items() if k not in NOT_FINGERPRINTED},
                     model=dict(model.config), optimizer=optimizer, lr=lr, seed=seed, index=index_digest,
                     init=init_digest, format=CHECKPOINT_FORMAT, code=code_digest())

    # -------------------------------------------------------------- resume
    ckpt_path = ckpt_dir / CHECKPOINT_NAME
    state = _load_training_state(ckpt_path, fp)
    start = 0
    rows: list[dict] = []
    first_window: list[dict] = []
    recent: list[dict] = []
    counters = {"skipped_steps": 0, "skipped_samples": 0}
    pending_saved: list[dict] = []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start = int(state["step"])
        rows, first_window, recent = list(state["rows"]), list(state["first_window"]), list(state["recent"])
        counters.update({k: int(v) for k, v in state["counters"].items()})
        pending_saved = list(state.get("pending", []))
        if info.is_main:
            logger.info("resuming %s training from %s at step %d/%d", stage, ckpt_path, start, total_steps)
    if start > total_steps:
        raise ValueError(f"{ckpt_path}: checkpoint is at step {start}, beyond the {total_steps} steps configured")

    fwd: nn.Module = StageForward(model, stage, int(cfg["backbone_passes"]))
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd = DDP(fwd, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False)

    local = bsz // info.world_size
    sampler = StepBatchSampler(len(train_set), bsz, seed, total_steps, start, info.rank, info.world_size)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=int(cfg["num_workers"]),
                        pin_memory=dev.type == "cuda", persistent_workers=False)
    visualizer = Visualizer(val_set, stage, int(cfg["vis_pairs"]), int(cfg["vis_keypoints"]), seed) if info.is_main else None
    log = _Logger(live_dir, info.is_main, rows, start)
    window = int(cfg["metrics_window"])
    log_every = int(cfg["log_every"])
    pending: list[dict] = pending_saved
    times: list[float] = []
    last_val: dict[str, float] = {}

    def checkpoint(step: int) -> None:
        if not info.is_main:
            return
        _save_training_state(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "fingerprint": fp, "stage": stage, "step": step,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "rng": rng_state(), "rows": rows, "first_window": first_window, "recent": recent,
            "counters": counters, "pending": pending,
        })

    bar = tqdm(total=total_steps, initial=start, desc=f"train_{stage}", unit="step",
               disable=not (progress and info.is_main), dynamic_ncols=True)
    step = start
    ran = 0
    for batch in loader:
        t0 = time.perf_counter()
        set_train_modes(model, stage, bool(cfg["freeze_bn"]))
        im1 = batch["image1"].to(dev, non_blocking=True)
        im2 = batch["image2"].to(dev, non_blocking=True)
        with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
            outputs = fwd(im1, im2)
        objective, loss, stats = compute_objective(stage, loss_fn, outputs, batch, (W, H), seed, step,
                                                   info.rank * local, bsz, info)
        opt.zero_grad(set_to_none=True)
        scaler.scale(objective).backward()
        if math.isfinite(loss):
            scaler.step(opt)
            scaler.update()
        else:  # the original's NaN guard: skip the update (gradients were still synchronised)
            counters["skipped_steps"] += 1
            opt.zero_grad(set_to_none=True)
            if info.is_main:
                logger.warning("step %d: non-finite loss %s; update skipped", step, loss)
        skipped = batch["skipped"].sum().to(torch.float64)
        counters["skipped_samples"] += int(_all_reduce(skipped, info).item())
        lr_now = opt.param_groups[0]["lr"]
        step += 1
        ran += 1
        if step % spe == 0:
            sched.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        times.append(dt)
        record = {"step": step, "loss": loss, **stats, "lr": lr_now, "seconds_per_step": dt}
        record.pop("temperature", None)
        if len(first_window) < window:
            first_window.append(record)
        recent.append(record)
        del recent[:-window]
        pending.append(record)
        if step % log_every == 0 or step == total_steps:
            row = {"step": step, **_window_mean(pending)}
            pending = []
            rows.append(row)
            log.metrics(row)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if visualizer is not None and (step % int(cfg["vis_every"]) == 0 or step == total_steps):
            images, last_val = visualizer(model, dev)
            log.images(step, images)
            if last_val:
                log.metrics({"step": step, **last_val})
        if step % int(cfg["checkpoint_every"]) == 0 or step == total_steps:
            checkpoint(step)
        if stop_after is not None and ran >= stop_after and step < total_steps:
            bar.close()
            log.end()
            raise TrainingInterrupted(f"stopped after {ran} steps (at step {step}) as asked")
    bar.close()
    if visualizer is not None and ran == 0:  # a finished run rerun: its final visualisation again
        images, last_val = visualizer(model, dev)
        log.images(step, images)

    # ---------------------------------------------------------------- outputs
    final = _window_mean(recent)
    initial = _window_mean(first_window)
    metrics = {
        "steps": step,
        "loss": final.get("loss"),
        "loss_initial": initial.get("loss"),
        "components": {k: v for k, v in final.items() if k not in ("loss", "lr", "seconds_per_step")},
        "seconds_per_iteration": float(np.mean(times)) if times else None,
        "world_size": info.world_size,
        "device": str(dev),
        **counters,
    }
    if last_val:
        metrics["val"] = {k.split("/", 1)[1]: v for k, v in last_val.items()}
    if info.is_main:
        save_checkpoint(out_model, model, extra={"stage": stage, "steps": step, "fingerprint": fp})
        if metrics_path is not None:
            from posfeat.io import write_json

            write_json(metrics_path, metrics)
        logger.info("%s: %d steps, loss %.4f (first %d steps: %.4f), %.3f s/step → %s", stage, step,
                    metrics["loss"] if metrics["loss"] is not None else float("nan"), len(first_window),
                    metrics["loss_initial"] if metrics["loss_initial"] is not None else float("nan"),
                    metrics["seconds_per_iteration"] or 0.0, out_model)
    log.end()
    if info.enabled:
        dist.barrier()
    return metrics
