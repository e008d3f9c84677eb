"""The GPU check (issue 11): CUDA tests, paper-scale training steps, real training, extraction, matching → JSON.

    benchmarks/speed/gpu_check.sh                        # on a CUDA machine, ≤ 8 min on one GPU
    benchmarks/speed/gpu_check.sh --device cpu --tiny    # dry run of every part at a tiny size, on a CPU

It needs only ``pip install -r requirements.txt -e .`` (torch, no pycolmap, DVC, Hydra or ruamel: no section
imports them; the trainer runs without its DVCLive logger). Sections (each measuring one in its own process with
a timeout, so that a crash or a hang of one is recorded and the others run; the report is rewritten after each,
so a killed run still leaves what it measured):

* ``cuda_tests``: the tests that skip without CUDA (``-k "cuda or gpu"`` in :data:`CUDA_TEST_FILES`, the only
  test files that hold them; on a CPU they run as skips);
* ``training``: steady-state steps of both stages at paper size (ResNet-50, 640×480, batch 8 for stage 1 and 6
  for stage 2, the paper's detector and optimisers; random weights and seeded random images, a real camera
  pair's epipolar geometry) in float32 and in bf16 autocast, via ``benchmarks/speed/bench_training.py``: warm-up
  steps untimed, then mean and min seconds per step over the timed ones (nothing but the step in them: no
  checkpoint, no validation), the loss's share of a step, ``torch.cuda.max_memory_allocated`` and
  ``max_memory_reserved``, and both peaks again at half the batch;
* ``bf16_vs_fp32`` (from ``training``): per stage, the loss of every step of both precisions from the same
  initial weights on the same seeded batches, and their largest relative difference;
* ``memory`` (from ``training``): per stage and precision, a linear fit ``fixed + per_pair × batch`` through
  the peaks measured at two batches, and the largest batch whose predicted reserved memory stays under 24 GiB
  (an extrapolation from two measured batches, not a measurement);
* ``extraction``: PoSFeat on one 1600×1200 image (paper model, 20480 keypoints at most), seconds and peak memory;
* ``matching``: mutual nearest neighbours of 20480 × 20480 128-D descriptors;
* ``train_real``: real paper-scale stage-1 training (the study's trainer, float32) on demo-world photographs
  rendered at 640×480, for about 90 s, with the loss of every step;
* ``train_real_kp``: stage 2 trained for real from that stage-1 model for about 90 s, the loss of every step
  and the score maps' statistics before and after;
* ``ddp``: one stage-1 step (after a warm-up) under ``torchrun --nproc_per_node=2`` (NCCL, SyncBatchNorm),
  when two GPUs are visible; ``--tiny --device cpu`` runs it with gloo on the CPU.

Memory figures are CUDA's; on a CPU they are ``null`` (``bench_training``'s ``peak_memory_MiB`` is there the
growth of the resident set instead). The real training shortens itself to what ``--budget`` has left.
Without CUDA (and without ``--device cpu``) it stops at once with exit status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed.bench_training import cuda_peaks  # the CUDA peaks both measure the same way

ROOT = Path(__file__).resolve().parents[2]

PAPER = {
    "extract_size": (1600, 1200),
    "max_keypoints": 20480,
    "match_n": 20480,
    "scale": "paper",
    "warmup": 3,  # untimed steps of each training case (allocator, cuDNN, optimiser state)
    "timed": 17,  # timed steps: 20 steps from the initial weights for the bf16/fp32 comparison
    "train_seconds": 90.0,  # real training of each stage
    "render": (6, 12),  # demo MegaDepth scenes × images (3 are IMC-banned ids: 3 kept, 92 training pairs, ~10 s)
    "first_chunk": 5,  # steps of the first real-training call, which measures the step time
    "workers": 6,  # data-loader processes (conf/scale/paper.yaml)
}
TINY = {
    "extract_size": (320, 240),
    "max_keypoints": 2048,
    "match_n": 2048,
    "scale": "demo",
    "warmup": 1,
    "timed": 2,
    "train_seconds": 1.0,
    "render": (2, 5),
    "first_chunk": 2,
    "workers": 0,
}
CUDA_TEST_FILES = ("tests/test_fidelity.py", "tests/test_losses.py", "tests/test_models.py")
"""The test files with CUDA tests (``skipif(not torch.cuda.is_available())``); none imports pycolmap."""
MEMORY_LIMIT_GIB = 24
TRAIN_SLACK = {"train_real": 70, "train_real_kp": 60}
"""seconds a real-training child may run beyond its training time (rendering, start-up, the calls' ends)"""
SECTION_TIMEOUT = {
    "cuda_tests": 90,
    "training": 75,  # each of the 4 cases
    "extraction": 45,
    "matching": 30,
    "train_real": int(PAPER["train_seconds"]) + TRAIN_SLACK["train_real"],
    "train_real_kp": int(PAPER["train_seconds"]) + TRAIN_SLACK["train_real_kp"],
    "ddp": 90,
}
"""seconds per child process. One GPU: at most 90 + 4·75 + 45 + 30 + 160 + 150 = 775 s if every part hung, but
the wrapper's 480 s end the run first (the report keeps the sections done) and each real-training stage shortens
itself to what ``--budget`` (460 s by default) has left. Expected on an H100 (an estimate until a run measures
it): tests ~20 s, the 4 training cases ~25–30 s each (start-up and 39 steps), extraction and matching ~25 s,
rendering ~15 s, the two real-training stages 90 s each plus ~25 s each of start-up, per-call and final writes:
about 400 s, under 7 minutes (ddp skipped)."""
TINY_TIMEOUT = 240
"""seconds per child process of the CPU dry run (shared, slow cores)"""


def _env() -> dict:
    """The children's environment: this checkout first on ``PYTHONPATH``."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _run(cmd: list[str], timeout: float) -> dict:
    """Run a child process; its JSON result is its last stdout line."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-800:]
        return {
            "error": f"timed out after {timeout:.0f} s",
            "stderr_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail,
        }
    out = {"seconds": round(time.perf_counter() - t0, 2), "returncode": proc.returncode}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            out.update(json.loads(lines[-1]))
            return out
        except json.JSONDecodeError:
            pass
    out["error"] = (proc.stderr.strip().splitlines() or lines or ["no output"])[-1]
    out["stderr_tail"] = proc.stderr[-1500:]
    return out


def _finite(x) -> float | None:
    """``x`` as a float, ``None`` where it is missing or not finite (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


# ------------------------------------------------------------------------------------- what the driver derives
def compare_losses(fp32: list, bf16: list) -> dict:
    """The loss sequences of both precisions over the same steps and their largest relative difference
    ``|bf16 − fp32| / |fp32|`` (over the steps where both are finite; ``None`` where there is none)."""
    n = min(len(fp32), len(bf16))
    diffs = [
        abs(b - a) / max(abs(a), 1e-12)
        for a, b in zip(fp32[:n], bf16[:n])
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    return {
        "steps": n,
        "losses_float32": [_finite(v) for v in fp32],
        "losses_bf16": [_finite(v) for v in bf16],
        "max_relative_difference": max(diffs) if diffs else None,
        "final_relative_difference": diffs[-1] if len(diffs) == n and n else None,
    }


def linear_batch_fit(points: list[tuple[int, float]], limit_mib: float) -> dict:
    """The line ``fixed + per_pair × batch`` through two measured ``(batch, MiB)`` points and the largest batch
    whose predicted memory stays below ``limit_mib`` (``None`` where memory does not grow with the batch)."""
    (b1, m1), (b2, m2) = sorted(points)
    if b1 == b2:
        raise ValueError(f"a linear fit needs two different batches, got {b1} twice")
    per_pair = (m2 - m1) / (b2 - b1)
    fixed = m1 - per_pair * b1
    largest = None
    if per_pair > 0:
        largest = max(0, math.floor((limit_mib - fixed) / per_pair))
        if largest and fixed + per_pair * largest >= limit_mib:
            largest -= 1
    return {"fixed_MiB": fixed, "per_pair_MiB": per_pair, "largest_batch": largest}


def memory_section(rows: list[dict], limit_gib: float = MEMORY_LIMIT_GIB) -> dict:
    """Per training case, both CUDA peaks at its two batches and the batch predicted to fit ``limit_gib``."""
    out = {
        "limit_GiB": limit_gib,
        "method": (
            "extrapolation from two measured batches: a line fixed + per_pair × batch through the peaks measured at "
            "the paper's batch and at half of it (same process, cached blocks released in between); the largest "
            "batch is the one whose predicted max_memory_reserved stays under the limit. The CUDA context and "
            "other memory outside PyTorch's allocator (cuda_outside_allocator_MiB) come on top."
        ),
        "cases": [],
    }
    for r in rows:
        if "error" in r:
            continue
        half = r.get("memory_at_batch") or {}
        case = {
            "stage": r["stage"],
            "amp": r["amp"],
            "batches": [half.get("batch"), r["batch"]],
            "peak_allocated_MiB": [half.get("peak_allocated_MiB"), r.get("peak_allocated_MiB")],
            "peak_reserved_MiB": [half.get("peak_reserved_MiB"), r.get("peak_reserved_MiB")],
            "cuda_outside_allocator_MiB": r.get("cuda_outside_allocator_MiB"),
            "largest_batch_under_limit": None,
        }
        if None in case["peak_reserved_MiB"] or None in case["batches"]:
            case["note"] = "no CUDA memory statistics on this device: figures null"
        else:
            for kind in ("reserved", "allocated"):
                pts = list(zip(case["batches"], case[f"peak_{kind}_MiB"]))
                case[f"fit_{kind}"] = linear_batch_fit(pts, limit_gib * 1024)
            case["largest_batch_under_limit"] = case["fit_reserved"]["largest_batch"]
        out["cases"].append(case)
    return out


def bf16_section(rows: list[dict]) -> dict:
    """Per stage, :func:`compare_losses` of its float32 and bf16 training cases."""
    out = {"same_steps": "seed-0 initial weights; step i's images and loss sampling seeded by i, in both precisions"}
    for stage in ("desc", "kp"):
        by_amp = {r.get("amp"): r for r in rows if r.get("stage") == stage and "error" not in r}
        low = next((v for k, v in by_amp.items() if k != "float32"), None)
        if "float32" in by_amp and low is not None:
            out[stage] = {"amp": low["amp"], **compare_losses(by_amp["float32"]["losses"], low["losses"])}
        else:
            out[stage] = {"error": "a precision's training case failed: nothing to compare"}
    return out


# ------------------------------------------------------------------------------------- child parts
def part_extraction(device: str, size: tuple[int, int], max_keypoints: int, model_scale: str) -> dict:
    """PoSFeat extraction on one blocky-textured image of ``size``: seconds per image (3 after a warm-up)."""
    import numpy as np
    import torch

    from benchmarks.speed.bench_training import SCALES
    from posfeat.extraction import ExtractConfig, extract_posfeat
    from posfeat.models import build_model

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(SCALES[model_scale]["model"]).to(dev).eval()
    w, h = size
    rng = np.random.default_rng(0)
    small = rng.random((h // 16, w // 16, 3))
    img = (np.kron(small, np.ones((16, 16, 1))) * 200 + rng.random((h, w, 3)) * 55).astype(np.uint8)  # blocky texture
    cfg = ExtractConfig(max_keypoints=max_keypoints, nms_radius=3, threshold=0.5, threshold_mode="abs")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    extract_posfeat(model, img, cfg, dev)  # warm-up
    times = []
    for _ in range(3):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        feats = extract_posfeat(model, img, cfg, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    peaks = cuda_peaks(dev)
    return {
        "image_size": [w, h],
        "model": SCALES[model_scale]["model"],
        "seconds_per_image": sum(times) / len(times),
        "seconds_all": times,
        "keypoints": int(len(feats["keypoints"])),
        "peak_memory_MiB": peaks["peak_allocated_MiB"],
        **peaks,
        "precision": "float32",
    }


def part_matching(device: str, n: int) -> dict:
    """Mutual nearest neighbours of ``n`` × ``n`` 128-D descriptors: seconds per pair (3 after a warm-up)."""
    import torch

    from posfeat.matching import match_descriptors

    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    d0 = torch.nn.functional.normalize(torch.randn(n, 128, generator=g), dim=1).to(dev)
    d1 = torch.nn.functional.normalize(d0.cpu() + 0.3 * torch.randn(n, 128, generator=g), dim=1).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    match_descriptors(d0, d1, mutual=True, device=dev)  # warm-up
    times = []
    for _ in range(3):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        m = match_descriptors(d0, d1, mutual=True, device=dev)
        times.append(time.perf_counter() - t0)  # match_descriptors returns NumPy: synchronised
    peaks = cuda_peaks(dev)
    return {
        "n": n,
        "dim": 128,
        "seconds_per_pair": sum(times) / len(times),
        "seconds_all": times,
        "matches": int(len(m)),
        "peak_memory_MiB": peaks["peak_allocated_MiB"],
        **peaks,
    }


def real_training_config(stage: str, scale: str, workers: int) -> dict:
    """The trainer's configuration of ``stage`` at ``scale`` (``bench_training``'s sizes, batches and loss
    settings, the paper's colour jitter) for open-ended runs: one step per "epoch" and no learning-rate decay, so
    that ``epochs`` (which does not enter the checkpoint's fingerprint) sets where a call stops; one log row
    per step; validation and checkpoint only at a call's last step."""
    from benchmarks.speed.bench_training import DESC_LOSS, KP_LOSS, SCALES

    spec = SCALES[scale]
    (w, h), batch = spec[stage]
    freeze_bn, passes = spec["bn"]
    cfg = dict(
        image_size=[w, h],
        batch_size=batch,
        epochs=1,
        steps_per_epoch=1,
        lr_decay_step=10**9,
        lr_gamma=1.0,
        log_every=1,
        vis_every=10**9,
        checkpoint_every=10**9,
        vis_pairs=2,
        num_workers=workers,
        color_jitter=[1.0, 1.0, 1.0, 0.4],
    )
    if stage == "desc":
        return {**cfg, "freeze_bn": freeze_bn, "backbone_passes": passes, **DESC_LOSS}
    return {**cfg, **KP_LOSS}


def _history(ckpt_path: Path) -> tuple[list[float | None], list[float], str]:
    """The loss of every step (``None`` where not finite), the trainer's seconds per step and the fingerprint of
    a run's resumable checkpoint (its history holds one row per step with ``log_every: 1``)."""
    import torch

    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    by_step = {int(r["step"]): r["loss"] for r in state["rows"] if "loss" in r}
    times = [float(t) for t in state["times"]]
    return [_finite(by_step.get(s)) for s in range(1, len(times) + 1)], times, state["fingerprint"]


def next_chunk(left: float, last_times: list[float], overhead: float, minimum: int) -> int:
    """Steps that fit in ``left`` seconds after one call's ``overhead``, at the median steady step time of the
    last call (its first step left out); 0 when fewer than ``minimum`` fit."""
    steady = sorted(last_times[1:] or last_times)
    per_step = max(steady[len(steady) // 2], 1e-3)
    n = int((left - overhead) // per_step)
    return n if n >= minimum else 0


def _train_for(stage: str, index, cfg: dict, seconds: float, work: Path, first_chunk: int, device: str, **kw) -> dict:
    """Train ``stage`` with the study's trainer for about ``seconds``: a first call of ``first_chunk`` steps, then
    calls sized by :func:`next_chunk`, each resumed from the checkpoint the previous one wrote at its end. The
    checkpoint, the final model and the validation images are written only at a call's end, outside the steps
    the trainer times."""
    from posfeat.training import CHECKPOINT_NAME, train

    ckpt_dir = work / f"ckpt_{stage}"
    steps, chunk, chunks, metrics, first_fp = 0, max(1, int(first_chunk)), [], {}, None
    t0 = time.perf_counter()
    while chunk >= 1:
        metrics = train(
            stage,
            index,
            dict(cfg, epochs=steps + chunk),
            out_model=work / f"{stage}.pt",
            ckpt_dir=ckpt_dir,
            live_dir=None,
            seed=0,
            device=device,
            progress=False,
            **kw,
        )
        steps += chunk
        chunks.append(chunk)
        losses, times, fp = _history(ckpt_dir / CHECKPOINT_NAME)
        if chunks[1:] and fp != first_fp:
            raise RuntimeError(f"{ckpt_dir}: the trainer restarted instead of resuming (its fingerprint changed)")
        first_fp = first_fp or fp
        elapsed = time.perf_counter() - t0
        chunk = next_chunk(seconds - elapsed, times[-chunk:], (elapsed - sum(times)) / len(chunks), first_chunk)
    elapsed = time.perf_counter() - t0
    starts = {sum(chunks[:i]) for i in range(len(chunks))}  # each call's first step (loader start, warm-up)
    steady = [t for i, t in enumerate(times) if i not in starts] or times
    return {
        "steps": steps,
        "calls": chunks,
        "seconds": elapsed,
        "wall_seconds_per_step": elapsed / steps,
        "seconds_per_step_mean": sum(steady) / len(steady),
        "seconds_per_step_min": min(steady),
        "loss_curve": losses,
        "loss_initial_window_mean": _finite(metrics.get("loss_initial")),
        "loss_final_window_mean": _finite(metrics.get("loss")),
        "skipped_steps": metrics.get("skipped_steps"),
        "val": metrics.get("val"),
    }


def score_map_stats(model_path: Path, index, size: tuple[int, int], device: str, pairs: int = 4) -> dict:
    """The score maps of a model (eval mode) on the first ``pairs`` validation pairs, both images: mean, standard
    deviation, median, 99th percentile and maximum of the scores, and the mean share of an image's score mass
    in its top 1 % of pixels (0.01 for a flat map, near 1 for a peaked one)."""
    import torch

    from posfeat.models import load_checkpoint, normalize_image
    from posfeat.trainset.pairs import PairDataset

    dev = torch.device(device)
    model, _ = load_checkpoint(model_path, map_location=dev)
    model.eval()
    data = PairDataset(index, "val", size, None, 0)
    if len(data) == 0:
        data = PairDataset(index, "train", size, None, 0)
    maps = []
    with torch.no_grad():
        for i in range(min(pairs, len(data))):
            s = data[i]
            x = normalize_image(torch.stack([s["image1"], s["image2"]]).to(dev))
            maps.append(model(x)["score"].float().flatten(1).cpu())
    scores = torch.cat(maps)
    k = max(1, scores.shape[1] // 100)
    top_share = scores.topk(k, dim=1).values.sum(1) / scores.sum(1).clamp_min(1e-12)
    flat = scores.flatten()
    q = torch.quantile(flat[:: max(1, flat.numel() // 1_000_000)], torch.tensor([0.5, 0.99]))
    return {
        "images": int(scores.shape[0]),
        "mean": float(flat.mean()),
        "std": float(flat.std()),
        "median": float(q[0]),
        "p99": float(q[1]),
        "max": float(flat.max()),
        "top1pct_mass_share": float(top_share.mean()),
    }


def part_train_real(
    device: str, scale: str, seconds: float, scenes: int, images: int, workers: int, work: str, first_chunk: int
) -> dict:
    """Real stage-1 training on demo-world photographs (rendered into ``work`` at 640×480, MegaDepth layout) for
    about ``seconds`` with the study's trainer at ``scale`` (paper: ResNet-50, batch 8, train-mode BatchNorm, two
    backbone passes, Adam 1e-4, float32, no ImageNet weights). Leaves the index and the stage-1 model in ``work``
    for :func:`part_train_real_kp`; returns the loss of every step, step times and the CUDA peaks."""
    import torch

    from benchmarks.speed.bench_training import SCALES
    from posfeat.demo import write_megadepth
    from posfeat.io import write_json
    from posfeat.trainset.prepare import prepare_megadepth

    work = Path(work)
    spec = SCALES[scale]
    dev = torch.device(device)
    t0 = time.perf_counter()
    write_megadepth(work / "megadepth", 0, scenes, images, (640, 480))
    index, _ = prepare_megadepth(work / "megadepth", seed=0)
    write_json(work / "index.json", index)
    render_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    cfg = real_training_config("desc", scale, workers)
    run = _train_for(
        "desc", index, cfg, seconds, work, first_chunk, device, model_config=spec["model"], optimizer="adam", lr=1e-4
    )
    return {
        "stage": "desc",
        "scale": scale,
        "image_size": cfg["image_size"],
        "batch": cfg["batch_size"],
        "optimizer": "adam 1e-4",
        "precision": "float32",
        "budget_seconds": seconds,
        **run,
        "render_seconds": render_s,
        "pairs": len(index["train"]),
        **cuda_peaks(dev),
    }


def part_train_real_kp(device: str, scale: str, seconds: float, workers: int, work: str, first_chunk: int) -> dict:
    """Real stage-2 training from :func:`part_train_real`'s stage-1 model and photographs in ``work`` for about
    ``seconds`` (paper: the detector on the frozen ResNet-50, batch 6, SGD 1e-3, float32); returns the loss of
    every step, step times, CUDA peaks and :func:`score_map_stats` before (the untrained detector) and after."""
    import torch

    from posfeat.io import read_json

    work = Path(work)
    desc = work / "desc.pt"
    if not desc.is_file():
        raise SystemExit(f"gpu_check: {desc} is missing: train_real_kp needs train_real's stage-1 model")
    index = read_json(work / "index.json")
    dev = torch.device(device)
    cfg = real_training_config("kp", scale, workers)
    size = tuple(cfg["image_size"])
    before = score_map_stats(desc, index, size, device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    run = _train_for(
        "kp", index, cfg, seconds, work, first_chunk, device, init_checkpoint=desc, optimizer="sgd", lr=1e-3
    )
    peaks = cuda_peaks(dev)
    return {
        "stage": "kp",
        "scale": scale,
        "image_size": cfg["image_size"],
        "batch": cfg["batch_size"],
        "optimizer": "sgd 1e-3",
        "precision": "float32",
        "budget_seconds": seconds,
        **run,
        **peaks,
        "score_map_before": before,
        "score_map_after": score_map_stats(work / "kp.pt", index, size, device),
    }


def part_ddp(device: str, scale: str, global_batch: int) -> dict | None:
    """One rank of ``torchrun``: a warm-up and a timed stage-1 step with DDP (SyncBatchNorm on CUDA)."""
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from benchmarks.speed.bench_training import DESC_LOSS, SCALES, _fundamentals
    from posfeat.losses.line2window import Line2WindowLoss
    from posfeat.models import build_model
    from posfeat.training import StageForward, compute_objective, init_distributed, set_train_modes

    cuda = device.startswith("cuda")
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    info = init_distributed(dev)
    try:
        spec = SCALES[scale]
        (w, h), _ = spec["desc"]
        freeze_bn, passes = spec["bn"]
        local = global_batch // info.world_size
        torch.manual_seed(0)
        model = build_model(spec["model"]).to(dev)
        for p in model.detector.parameters():
            p.requires_grad_(False)
        if cuda:
            model.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
        fwd = DDP(
            StageForward(model, "desc", passes), device_ids=[dev.index] if cuda else None, broadcast_buffers=False
        )
        opt = torch.optim.Adam(model.backbone.parameters(), lr=1e-4)
        loss_fn = Line2WindowLoss(**DESC_LOSS)
        F12, F21 = (m.to(dev) for m in _fundamentals(w, h, local))
        g = torch.Generator().manual_seed(1 + info.rank)
        im1, im2 = (torch.rand(local, 3, h, w, generator=g).to(dev) for _ in range(2))
        times, loss = [], None
        for step in range(2):
            if cuda:
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            set_train_modes(model, "desc", freeze_bn)
            out = fwd(im1, im2)
            obj, loss, _ = compute_objective(
                "desc", loss_fn, out, {"F12": F12, "F21": F21}, (w, h), 0, step, info.rank * local, global_batch, info
            )
            opt.zero_grad(set_to_none=True)
            obj.backward()
            opt.step()
            if cuda:
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
        # the replicas must still agree after the updates
        p = next(model.backbone.parameters()).detach().flatten()[:64].double()
        ref = p.clone()
        dist.broadcast(ref, 0)
        agree = bool(torch.allclose(p, ref))
        peaks = cuda_peaks(dev)
        res = {
            "world_size": info.world_size,
            "backend": dist.get_backend(),
            "global_batch": global_batch,
            "image_size": [w, h],
            "seconds_per_step": times[-1],
            "warmup_seconds": times[0],
            "loss": loss,
            "replicas_agree": agree,
            "peak_allocated_MiB_rank0": peaks["peak_allocated_MiB"],
            "peak_reserved_MiB_rank0": peaks["peak_reserved_MiB"],
        }
        return res if info.is_main else None
    finally:
        if info.owner:
            dist.destroy_process_group()


PARTS = {
    "extraction": part_extraction,
    "matching": part_matching,
    "train_real": part_train_real,
    "train_real_kp": part_train_real_kp,
    "ddp": part_ddp,
}


# ------------------------------------------------------------------------------------------ driver
def _versions() -> dict:
    import torch

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "host": platform.node(),
    }
    if torch.cuda.is_available():
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
    return out


def cuda_tests_command(python: str) -> list[str]:
    """The pytest command of the ``cuda_tests`` section: the CUDA tests of :data:`CUDA_TEST_FILES` only, so that
    no test module that needs pycolmap (or anything else ``requirements.txt`` may lack) is collected."""
    return [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "not slow", "-k", "cuda or gpu"] + [
        str(ROOT / f) for f in CUDA_TEST_FILES
    ]


def real_training_seconds(planned: float, left: float, stages_left: int, reserve: float) -> float:
    """Training seconds of the next real-training stage: ``planned``, or an equal share of what the budget has
    ``left`` after ``reserve`` seconds per stage still to run (rendering, start-up, final writes), but at least a
    tenth of ``planned``."""
    share = (left - reserve * stages_left) / max(stages_left, 1)
    return round(max(0.1 * planned, min(planned, share)), 1)


class Check:
    """One run of the check: the report, where it goes, and how each section's child is started."""

    def __init__(self, args: argparse.Namespace, out: Path):
        self.args, self.out = args, out
        self.sizes = TINY if args.tiny else PAPER
        self.py, self.me = sys.executable, ["-m", __spec__.name]
        self.dev = ["--device", args.device]
        self.t_start = time.perf_counter()
        self.report = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "device": args.device,
            "tiny": args.tiny,
            "budget_seconds": args.budget,
            **_versions(),
            "sections": {},
        }

    def timeout(self, section: str) -> float:
        """A section child's timeout: :data:`SECTION_TIMEOUT`, or :data:`TINY_TIMEOUT` in the dry run."""
        return TINY_TIMEOUT if self.args.tiny else SECTION_TIMEOUT[section]

    def left(self) -> float:
        """Seconds of the budget not yet spent."""
        return self.args.budget - (time.perf_counter() - self.t_start)

    def write(self) -> None:
        """Rewrite the report with the time spent so far."""
        from posfeat.io import write_json

        self.report["total_seconds"] = round(time.perf_counter() - self.t_start, 1)
        write_json(self.out, self.report)

    def save(self, section: str, value, keys: tuple[str, ...] = (), summary=None) -> None:
        """Record a section, rewrite the report, print a line of its main figures (``summary``, else ``keys`` of a
        dict, else the whole dict)."""
        self.report["sections"][section] = value
        self.write()
        if summary is None and isinstance(value, dict):
            summary = {k: value.get(k) for k in keys} if keys else value
        if summary is not None:
            print(f"{section}:", summary, flush=True)

    def part(self, name: str, timeout: float, **kwargs) -> dict:
        """Run :data:`PARTS`'s ``name`` in a child process with ``kwargs``."""
        return _run([self.py, *self.me, *self.dev, "--part", name, json.dumps(kwargs)], timeout)

    def cuda_tests(self) -> None:
        """The CUDA tests (skips on a CPU)."""
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cuda_tests_command(self.py),
                capture_output=True,
                text=True,
                timeout=self.timeout("cuda_tests"),
                env=_env(),
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            self.save("cuda_tests", {"error": f"timed out after {self.timeout('cuda_tests')} s"})
            return
        lines = proc.stdout.strip().splitlines()
        res = {
            "returncode": proc.returncode,
            "files": list(CUDA_TEST_FILES),
            "summary": lines[-1] if lines else "",
            "seconds": round(time.perf_counter() - t0, 1),
            "output_tail": proc.stdout[-2000:] + proc.stderr[-500:],
        }
        self.save("cuda_tests", res, ("returncode", "summary"))

    def training(self) -> None:
        """Both stages in float32 and bf16 through ``bench_training.py``, then the two sections derived from them."""
        from benchmarks.speed.bench_training import SCALES

        rows, scale = [], self.sizes["scale"]
        for stage in ("desc", "kp"):
            half = max(1, SCALES[scale][stage][1] // 2)
            for amp in (False, True):
                cmd = [self.py, "-m", "benchmarks.speed.bench_training", *self.dev, "--case", stage, scale, "fast"]
                cmd += [str(self.sizes["timed"]), "0"]
                cmd += ["--warmup", str(self.sizes["warmup"]), "--memory-batch", str(half)] + ["--amp"] * amp
                res = _run(cmd, self.timeout("training"))
                res.setdefault("stage", stage)
                res.setdefault("amp", "bfloat16" if amp else "float32")
                rows.append(res)
                keys = ("stage", "amp", "seconds_per_iteration", "seconds_per_iteration_min", "peak_reserved_MiB")
                self.save("training", rows, summary={k: res.get(k) for k in (*keys, "error")})
        comparison = bf16_section(rows)
        diffs = {
            st: comparison[st].get("max_relative_difference", comparison[st].get("error")) for st in ("desc", "kp")
        }
        self.save("bf16_vs_fp32", comparison, summary={"max_relative_difference": diffs})
        memory = memory_section(rows)
        fits = {f"{c['stage']} {c['amp']}": c["largest_batch_under_limit"] for c in memory["cases"]}
        self.save("memory", memory, summary={f"largest batch under {MEMORY_LIMIT_GIB} GiB (extrapolated)": fits})

    def extraction(self) -> None:
        """PoSFeat extraction of one large image."""
        res = self.part(
            "extraction",
            self.timeout("extraction"),
            size=list(self.sizes["extract_size"]),
            max_keypoints=self.sizes["max_keypoints"],
            model_scale=self.sizes["scale"],
        )
        self.save("extraction", res, ("image_size", "seconds_per_image", "keypoints", "peak_reserved_MiB", "error"))

    def matching(self) -> None:
        """Mutual nearest neighbours at the paper's keypoint count."""
        res = self.part("matching", self.timeout("matching"), n=self.sizes["match_n"])
        self.save("matching", res, ("n", "seconds_per_pair", "matches", "error"))

    def train_real(self, work: Path, stage_sections: list[str]) -> None:
        """The real training of both stages (``train_real`` renders; ``train_real_kp`` continues from it)."""
        keys = ("steps", "seconds_per_step_mean", "seconds_per_step_min", "peak_reserved_MiB", "error")
        reserve = 40.0
        if "train_real" in stage_sections:
            secs = real_training_seconds(self.sizes["train_seconds"], self.left(), len(stage_sections), reserve)
            scenes, images = self.sizes["render"]
            res = self.part(
                "train_real",
                secs + TRAIN_SLACK["train_real"] if not self.args.tiny else TINY_TIMEOUT,
                scale=self.sizes["scale"],
                seconds=secs,
                scenes=scenes,
                images=images,
                workers=self.sizes["workers"],
                work=str(work),
                first_chunk=self.sizes["first_chunk"],
            )
            self.save("train_real", res, keys)
        if "train_real_kp" not in stage_sections:
            return
        if not (work / "desc.pt").is_file():
            self.save("train_real_kp", {"skipped": "no stage-1 model: train_real was skipped or failed"})
            return
        secs = real_training_seconds(self.sizes["train_seconds"], self.left(), 1, reserve)
        res = self.part(
            "train_real_kp",
            secs + TRAIN_SLACK["train_real_kp"] if not self.args.tiny else TINY_TIMEOUT,
            scale=self.sizes["scale"],
            seconds=secs,
            workers=self.sizes["workers"],
            work=str(work),
            first_chunk=self.sizes["first_chunk"],
        )
        self.save("train_real_kp", res, (*keys, "score_map_after"))

    def ddp(self) -> None:
        """A 2-process DDP step (two GPUs, or gloo on the CPU)."""
        import torch

        n_gpu = torch.cuda.device_count() if self.args.device.startswith("cuda") else 0
        if self.args.device.startswith("cuda") and n_gpu < 2:
            res = {"skipped": f"{n_gpu} GPU visible; the DDP step needs 2"}
        else:
            kwargs = json.dumps({"scale": self.sizes["scale"], "global_batch": 8 if not self.args.tiny else 2})
            cmd = [self.py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *self.me]
            res = _run([*cmd, *self.dev, "--part", "ddp", kwargs], self.timeout("ddp"))
        self.save("ddp", res, ("world_size", "backend", "seconds_per_step", "replicas_agree", "skipped", "error"))

    def terminated(self, signum: int, _frame) -> None:
        """SIGTERM (the wrapper's overall timeout): say so in the report, then stop with status 124 (the running
        child is killed and the work folder removed on the way out)."""
        spent = time.perf_counter() - self.t_start
        self.report["terminated"] = f"signal {signum} after {spent:.0f} s: the sections not in the report did not run"
        self.write()
        raise SystemExit(124)

    def run(self) -> int:
        """Every section not skipped, in order; the exit status (1 when a section failed)."""
        signal.signal(signal.SIGTERM, self.terminated)
        skip = set(self.args.skip)
        if self.args.device == "cpu":
            os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
        for name in ("cuda_tests", "training", "extraction", "matching"):
            if name not in skip:
                getattr(self, name)()
        stages = [s for s in ("train_real", "train_real_kp") if s not in skip]
        if stages:
            work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
            try:
                self.train_real(work, stages)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        if "ddp" not in skip:
            self.ddp()
        failed = [k for k, v in self.report["sections"].items() if _failed(v)]
        self.report["failed_sections"] = failed
        self.write()
        tail = "; FAILED: " + ", ".join(failed) if failed else ""
        print(f"report: {self.out} ({self.report['total_seconds']} s){tail}")
        return 1 if failed else 0


def _failed(value) -> bool:
    """Whether a section's record says it failed (an error, a non-zero exit, a failed training case)."""
    if isinstance(value, list):
        return any("error" in r for r in value)
    if not isinstance(value, dict):
        return False
    if "error" in value or value.get("returncode", 0) != 0:
        return True
    return any(isinstance(v, dict) and "error" in v for v in value.values())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu (dry run; use with --tiny)")
    p.add_argument("--tiny", action="store_true", help="demo-scale sizes (a dry run of every part)")
    p.add_argument(
        "--out",
        help="JSON report (default: $OUT/gpu_check.json where OUT is set, as on a lent device "
        "machine, else benchmarks/results/gpu_check-<time>.json)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=460.0,
        help="seconds the whole check may take; the real training shortens itself to fit (default 460; "
        "gpu_check.sh passes its timeout minus 20)",
    )
    p.add_argument("--skip", nargs="*", default=[], choices=list(SECTION_TIMEOUT), help="sections to leave out")
    p.add_argument("--part", nargs=2, metavar=("NAME", "JSON"), help=argparse.SUPPRESS)  # child processes
    return p.parse_args(argv)


def _bad_input(args: argparse.Namespace) -> str | None:
    """The one-line complaint about the arguments, or ``None`` when they are fine."""
    import torch

    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        return f"--device must be cpu, cuda or cuda:N, got {args.device!r}"
    if args.budget <= 0:
        return f"--budget must be a positive number of seconds, got {args.budget:g}"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return (
            f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "nothing was measured. On a CPU, `benchmarks/speed/gpu_check.sh --device cpu --tiny` is a dry run."
        )
    if args.device == "cpu" and not args.tiny:
        return "--device cpu runs only with --tiny (paper scale on a CPU takes far too long)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.part:
        name, kwargs = args.part
        if name not in PARTS:
            raise SystemExit(f"gpu_check: unknown part {name!r}")
        res = PARTS[name](args.device, **json.loads(kwargs))
        if res is not None:
            print(json.dumps(res))
        return 0
    problem = _bad_input(args)
    if problem:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 2
    default = (
        Path(os.environ["OUT"]) / "gpu_check.json"
        if os.environ.get("OUT")
        else ROOT / "benchmarks" / "results" / f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    return Check(args, Path(args.out) if args.out else default).run()


if __name__ == "__main__":
    sys.exit(main())
