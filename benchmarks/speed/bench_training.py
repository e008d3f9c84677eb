"""Seconds per training iteration and peak memory of both stages, fast loss vs the direct reference.

    python -m benchmarks.speed.bench_training                       # demo and paper scale, on the default device
    python -m benchmarks.speed.bench_training --scales demo --iters 3 --device cpu
    python -m benchmarks.speed.bench_training --out benchmarks/results/training.json

One iteration = forward of the trained part (stage 1: backbone on both images, detector not run;
stage 2: frozen backbone under ``no_grad`` + detector), the loss, backward and an optimiser step, on
random images (a batch of its own for each step, seeded by the step and drawn before its timing starts) with
the epipolar geometry of a real camera pair; the optimiser is the paper's (stage 1 Adam 1e-4, stage 2 SGD 1e-3),
and nothing else (no checkpoint, no validation) runs in the timed steps. The loss is either the implementation
the trainer uses (``fast``: stage 1 correlation GEMM + scalar sampling; stage 2 O(n) REINFORCE weights)
or the direct formulation of the original on the same inputs (``reference``: stage 1 samples
``D``-dimensional descriptors at every line/window point; stage 2 builds the ``B×n×n`` tensors in the
autograd graph). The figure is the ratio reference / fast.

Each iteration also reports the seconds spent in the loss's forward, and (unless ``--no-loss-share``) the
same iterations are repeated with the loss replaced by a trivial function of the network's outputs: the
loss's share of a step is ``1 − t_network_only / t_step`` (its forward *and* backward). The model, image
sizes, batches and BatchNorm settings (``freeze_bn``, ``backbone_passes``) are those of ``params.yaml`` (demo)
and ``conf/scale/paper.yaml`` (paper); float32 unless ``--amp`` (bf16 autocast, as ``amp: true``; on a CPU
without native bf16 it is emulated, which only the dry run of ``gpu_check.py`` asks for). The weights (seed 0)
and the batches of step ``i`` are the same whatever the precision, so the loss sequences of an fp32 and a bf16
run of the same case compare step for step.

For the README's CPU figures, on a quiet machine (nothing else running)::

    OMP_NUM_THREADS=2 python -m benchmarks.speed.bench_training --device cpu --iters 5 \
        --out benchmarks/results/training_cpu.json

Each case runs in its own process so that the peak memory is its own: ``torch.cuda.max_memory_allocated``
(and ``max_memory_reserved``) on GPU, the peak resident set size (``ru_maxrss``) minus the RSS before the first
iteration on CPU. ``--memory-batch N`` then also measures the CUDA peaks of two steps at batch ``N`` (for a
linear fit of memory against the batch).
The paper scale on a CPU runs a reduced batch (``--paper-cpu-batch``, default 1 pair) for 1 iteration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCALES = {
    # model config, stage-1 (size, batch), stage-2 (size, batch), stage-1 BatchNorm (freeze_bn, backbone_passes)
    # as in params.yaml (demo) and conf/scale/paper.yaml (paper)
    "demo": {
        "model": {"encoder": "daisy", "desc_dim": 200, "det_conv1": 32, "det_img": 16, "det_mid": 32},
        "desc": ((320, 240), 4),
        "kp": ((320, 240), 2),
        "bn": (True, 1),
    },
    # the demo scale of sweeps 1-9: the small convolutional encoder with the 256/128 decoder
    "demo_small": {
        "model": {"encoder": "small", "det_conv1": 32, "det_img": 16, "det_mid": 32, "decoder": [256, 128]},
        "desc": ((320, 240), 4),
        "kp": ((320, 240), 2),
        "bn": (True, 1),
    },
    # the demo scale before the sweep (the measurements): 256×192, the small encoder's 64/32 decoder
    "demo256": {
        "model": {"encoder": "small", "det_conv1": 32, "det_img": 16, "det_mid": 32},
        "desc": ((256, 192), 4),
        "kp": ((256, 192), 2),
        "bn": (True, 1),
    },
    "paper": {"model": {"encoder": "resnet50"}, "desc": ((640, 480), 8), "kp": ((640, 480), 6), "bn": (False, 2)},
}
DESC_LOSS = dict(grid_size=16, line_step=100, window_size=0.1, temperature=60.0, win_cost_thr=0.1)
KP_LOSS = dict(grid_size=8, temperature=60.0, reward_thr=2.0, good_reward=1.0, bad_reward=-0.25, kp_penalty=1e-3)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _fundamentals(width: int, height: int, batch: int):
    """F12, F21 of a camera pair with a 15° yaw and a sideways baseline (``batch×3×3``)."""
    import numpy as np
    import torch

    from posfeat.geometry import fundamental_from_poses

    f = 0.9 * width
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    a = np.deg2rad(15.0)
    R2 = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    t2 = np.array([-1.0, 0.05, 0.2])
    F12 = fundamental_from_poses(K, np.eye(3), np.zeros(3), K, R2, t2)
    F21 = fundamental_from_poses(K, R2, t2, K, np.eye(3), np.zeros(3))
    t = lambda m: torch.tensor(m, dtype=torch.float32).expand(batch, 3, 3).contiguous()  # noqa: E731
    return t(F12), t(F21)


def cuda_peaks(dev) -> dict:
    """``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` since the last reset (MiB); ``None`` off CUDA."""
    import torch

    if dev.type != "cuda":
        return {"peak_allocated_MiB": None, "peak_reserved_MiB": None}
    return {
        "peak_allocated_MiB": torch.cuda.max_memory_allocated(dev) / 2**20,
        "peak_reserved_MiB": torch.cuda.max_memory_reserved(dev) / 2**20,
    }


def _reset_cuda_peaks(dev, empty_cache: bool = False) -> None:
    """Start new CUDA peak statistics (after releasing the cached blocks when ``empty_cache``)."""
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        if empty_cache:
            torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _optimizer(stage: str, params):
    """The paper's optimiser of ``stage``: Adam 1e-4 (stage 1), SGD 1e-3 (stage 2)."""
    import torch

    return torch.optim.Adam(params, lr=1e-4) if stage == "desc" else torch.optim.SGD(params, lr=1e-3)


def run_case(
    stage: str,
    scale: str,
    impl: str,
    iters: int,
    device: str,
    batch: int | None,
    amp: bool = False,
    loss_share: bool = True,
    warmup: int = 1,
    memory_batch: int | None = None,
) -> dict:
    """Time ``iters`` iterations, after ``warmup`` untimed ones (none when ``iters == 1``), of one stage at one scale.

    Step ``i`` (warm-up steps first) trains on images and a loss sampling seeded by ``i``, drawn before its
    timing starts; ``losses`` lists the loss of every step from the initial weights, warm-up included.
    ``amp``: bf16 autocast (fp16 on a GPU without bf16) around the network forward, as the trainer's
    ``amp: true``; the losses run in float32 either way. ``loss_share``: also time the same iterations with the
    loss replaced by a trivial function of the same outputs (network forward, backward and update only); the
    loss's share of a step is ``1 − t_network_only / t_step``. ``memory_batch``: afterwards, the CUDA peaks of
    two steps at that batch (cached blocks released first), as ``memory_at_batch``.
    """
    import torch

    from posfeat.losses.line2window import Line2WindowLoss
    from posfeat.losses.reinforce import ReinforceLoss
    from posfeat.models import build_model
    from posfeat.training import StageForward, set_train_modes
    from posfeat.utils import resolve_device

    dev = resolve_device(device)
    spec = SCALES[scale]
    (w, h), b = spec[stage]
    freeze_bn, passes = spec["bn"]
    b = int(batch or b)
    n_warm = int(warmup) if iters > 1 else 0
    torch.manual_seed(0)
    model = build_model(spec["model"]).to(dev)
    trained = model.backbone if stage == "desc" else model.detector
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained.parameters():
        p.requires_grad_(True)
    fwd = StageForward(model, stage, passes)
    opt = _optimizer(stage, trained.parameters())
    loss_fn = Line2WindowLoss(**DESC_LOSS) if stage == "desc" else ReinforceLoss(**KP_LOSS)
    use_amp = bool(amp)
    amp_dtype = torch.float16 if dev.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)  # noqa: E731

    def inputs(i: int, n: int) -> tuple:
        """The images and fundamental matrices of step ``i`` at batch ``n`` (seeded by ``i``)."""
        gen = torch.Generator(device=dev).manual_seed(1000 + i)
        im1, im2 = (torch.rand(n, 3, h, w, generator=gen, device=dev) for _ in range(2))
        return im1, im2, *(m.to(dev) for m in _fundamentals(w, h, n))

    def step(i: int, data: tuple, with_loss: bool = True) -> tuple[float, float]:
        """One iteration on ``data`` → (loss value, seconds in the loss's forward)."""
        im1, im2, F12, F21 = data
        set_train_modes(model, stage, freeze_bn)
        gen = torch.Generator(device=dev).manual_seed(100 + i)
        with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
            out = fwd(im1, im2)
        sync()
        t0 = time.perf_counter()
        if not with_loss:  # network only: a loss that touches every output the real one does
            loss = sum(o.float().mean() for o in (out if stage == "desc" else out[2:]))
        elif stage == "desc":
            loss, _ = loss_fn(out[0].float(), out[1].float(), F12, F21, (w, h), generator=gen, impl=impl)
        else:
            res = loss_fn.terms(
                out[2].float(),
                out[3].float(),
                out[0].float(),
                out[1].float(),
                F12,
                F21,
                image_size=(w, h),
                generator=gen,
                impl="fast" if impl == "fast" else "dense",
            )
            loss = res["loss"]
        sync()
        t_loss = time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), t_loss

    def timed(first: int, n: int, with_loss: bool) -> tuple[list[float], list[float], list[float]]:
        """Steps ``first … first + n − 1``, each timed from its inputs on the device to its update's end."""
        times, loss_times, losses = [], [], []
        for i in range(first, first + n):
            data = inputs(i, b)
            sync()
            t0 = time.perf_counter()
            value, t_loss = step(i, data, with_loss)
            sync()
            times.append(time.perf_counter() - t0)
            loss_times.append(t_loss)
            losses.append(value)
        return times, loss_times, losses

    _reset_cuda_peaks(dev)
    rss0 = _rss_mb()
    warm_losses = [step(i, inputs(i, b))[0] for i in range(n_warm)]  # allocator, cuDNN autotune, optimiser state
    times, loss_times, losses = timed(n_warm, iters, True)
    peaks = cuda_peaks(dev)
    if dev.type == "cuda":
        peak, kind = peaks["peak_allocated_MiB"], "cuda_max_allocated_MiB"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - rss0
        kind = "cpu_peak_rss_increase_MiB"
    t_step = sum(times) / len(times)
    res = {
        "stage": stage,
        "scale": scale,
        "impl": impl,
        "device": str(dev),
        "image_size": [w, h],
        "batch": b,
        "amp": str(amp_dtype).replace("torch.", "") if use_amp else "float32",
        "optimizer": type(opt).__name__,
        "freeze_bn": freeze_bn,
        "backbone_passes": passes if stage == "desc" else None,
        "warmup": n_warm,
        "iters": iters,
        "seconds_per_iteration": t_step,
        "seconds_per_iteration_min": min(times),
        "seconds_per_iteration_all": times,
        "loss_forward_seconds": sum(loss_times) / len(loss_times),
        "peak_memory_MiB": peak,
        "memory_kind": kind,
        **peaks,
        "loss": losses[-1],
        "losses": warm_losses + losses,
        "threads": torch.get_num_threads(),
    }
    if loss_share:
        net_times, _, _ = timed(n_warm, iters, False)
        t_net = sum(net_times) / len(net_times)
        res["seconds_per_iteration_network_only"] = t_net
        res["loss_share"] = max(0.0, 1.0 - t_net / t_step)  # loss forward + its backward, of a whole step
    if memory_batch:
        _reset_cuda_peaks(dev, empty_cache=True)
        for i in range(2):
            step(i, inputs(i, int(memory_batch)))
        res["memory_at_batch"] = {"batch": int(memory_batch), **cuda_peaks(dev)}
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        res["cuda_outside_allocator_MiB"] = (total - free - torch.cuda.memory_reserved(dev)) / 2**20
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", nargs="+", default=["demo", "paper"], choices=list(SCALES))
    p.add_argument("--stages", nargs="+", default=["desc", "kp"], choices=["desc", "kp"])
    p.add_argument("--impls", nargs="+", default=["fast", "reference"], choices=["fast", "reference"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--paper-cpu-batch", type=int, default=1, help="pairs per batch at paper scale on a CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="bf16 autocast around the network (default float32)")
    p.add_argument("--no-loss-share", action="store_true", help="skip the network-only iterations")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations before the timed ones (default 1)")
    p.add_argument("--memory-batch", type=int, default=0, help="also measure the CUDA peaks of two steps at this batch")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--case", nargs=5, metavar=("STAGE", "SCALE", "IMPL", "ITERS", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.case:  # child process: one case, JSON on the last stdout line
        stage, scale, impl, iters, batch = args.case
        res = run_case(
            stage,
            scale,
            impl,
            int(iters),
            args.device,
            int(batch) or None,
            amp=args.amp,
            loss_share=not args.no_loss_share,
            warmup=args.warmup,
            memory_batch=args.memory_batch or None,
        )
        print(json.dumps(res))
        return 0

    from posfeat.utils import resolve_device

    dev = resolve_device(args.device)
    results = []
    for scale in args.scales:
        for stage in args.stages:
            for impl in args.impls:
                cpu_paper = scale == "paper" and dev.type == "cpu"
                iters = 1 if cpu_paper else args.iters
                batch = args.paper_cpu_batch if cpu_paper else 0
                cmd = [
                    sys.executable,
                    "-m",
                    __spec__.name,
                    "--device",
                    str(dev),
                    "--case",
                    stage,
                    scale,
                    impl,
                    str(iters),
                    str(batch),
                ]
                cmd += ["--amp"] * args.amp + ["--no-loss-share"] * args.no_loss_share
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if proc.returncode != 0:
                    err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    res = {"stage": stage, "scale": scale, "impl": impl, "error": err}
                else:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(res)
                print(json.dumps(res), flush=True)
    summary = []
    for scale in args.scales:
        for stage in args.stages:
            f = next((r for r in results if (r["scale"], r["stage"], r["impl"]) == (scale, stage, "fast")), None)
            r = next((r for r in results if (r["scale"], r["stage"], r["impl"]) == (scale, stage, "reference")), None)
            if f and r and "error" not in f and "error" not in r:
                summary.append(
                    {
                        "scale": scale,
                        "stage": stage,
                        "speedup": r["seconds_per_iteration"] / f["seconds_per_iteration"],
                        "memory_ratio": r["peak_memory_MiB"] / max(f["peak_memory_MiB"], 1e-9),
                    }
                )
    print(
        f"\n{'scale':6} {'stage':5} {'impl':9} {'batch':>5} {'s/iter':>9} {'loss fwd s':>10} {'loss share':>10} "
        f"{'peak MiB':>9}"
    )
    for r in results:
        if "error" in r:
            print(f"{r['scale']:6} {r['stage']:5} {r['impl']:9} error: {r['error']}")
        else:
            share = f"{100 * r['loss_share']:9.0f}%" if "loss_share" in r else f"{'-':>10}"
            print(
                f"{r['scale']:6} {r['stage']:5} {r['impl']:9} {r['batch']:5d} {r['seconds_per_iteration']:9.3f} "
                f"{r['loss_forward_seconds']:10.3f} {share} {r['peak_memory_MiB']:9.1f}"
            )
    for s in summary:
        print(
            f"{s['scale']:6} {s['stage']:5} reference/fast: time ×{s['speedup']:.2f}, memory ×{s['memory_ratio']:.2f}"
        )
    if args.out:
        from posfeat.io import write_json

        write_json(
            args.out,
            {
                "machine": platform.node(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "results": results,
                "summary": summary,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
