"""Seconds per training iteration and peak memory of both stages, fast loss vs the direct reference.

    python benchmarks/bench_training.py                       # demo and paper scale, on the default device
    python benchmarks/bench_training.py --scales demo --iters 3 --device cpu
    python benchmarks/bench_training.py --out benchmarks/results/training.json

One iteration = forward of the trained part (stage 1: backbone on both images, detector not run;
stage 2: frozen backbone under ``no_grad`` + detector), the loss, backward and an optimiser step, on
random images with the epipolar geometry of a real camera pair. The loss is either the implementation
the trainer uses (``fast``: stage 1 correlation GEMM + scalar sampling; stage 2 O(n) REINFORCE weights)
or the direct formulation of the original on the same inputs (``reference``: stage 1 samples
``D``-dimensional descriptors at every line/window point; stage 2 builds the ``B×n×n`` tensors in the
autograd graph). The figure is the ratio reference / fast.

Each case runs in its own process so that the peak memory is its own: ``torch.cuda.max_memory_allocated``
on GPU, the peak resident set size (``ru_maxrss``) minus the RSS before the first iteration on CPU.
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCALES = {
    # model config, stage-1 (size, batch), stage-2 (size, batch)
    "demo": {"model": {"encoder": "small", "det_conv1": 64, "det_img": 16, "det_mid": 16},
             "desc": ((256, 192), 4), "kp": ((256, 192), 2)},
    "paper": {"model": {"encoder": "resnet50"}, "desc": ((640, 480), 8), "kp": ((640, 480), 6)},
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


def run_case(stage: str, scale: str, impl: str, iters: int, device: str, batch: int | None) -> dict:
    """Time ``iters`` iterations (after one warm-up when ``iters > 1``) of one stage at one scale."""
    import torch

    from posfeat.losses.line2window import Line2WindowLoss
    from posfeat.losses.reinforce import ReinforceLoss
    from posfeat.models import build_model
    from posfeat.training import StageForward, set_train_modes
    from posfeat.utils import resolve_device

    dev = resolve_device(device)
    spec = SCALES[scale]
    (w, h), b = spec[stage]
    b = int(batch or b)
    torch.manual_seed(0)
    model = build_model(spec["model"]).to(dev)
    trained = model.backbone if stage == "desc" else model.detector
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained.parameters():
        p.requires_grad_(True)
    fwd = StageForward(model, stage)
    opt = torch.optim.SGD(trained.parameters(), lr=1e-3)
    loss_fn = Line2WindowLoss(**DESC_LOSS) if stage == "desc" else ReinforceLoss(**KP_LOSS)
    F12, F21 = (m.to(dev) for m in _fundamentals(w, h, b))
    gen_img = torch.Generator().manual_seed(1)
    im1 = torch.rand(b, 3, h, w, generator=gen_img).to(dev)
    im2 = torch.rand(b, 3, h, w, generator=gen_img).to(dev)
    use_amp = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

    def step(i: int) -> float:
        set_train_modes(model, stage)
        gen = torch.Generator(device=dev).manual_seed(100 + i)
        with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
            out = fwd(im1, im2)
        if stage == "desc":
            loss, _ = loss_fn(out[0].float(), out[1].float(), F12, F21, (w, h), generator=gen, impl=impl)
        else:
            res = loss_fn.terms(out[2].float(), out[3].float(), out[0].float(), out[1].float(), F12, F21,
                                image_size=(w, h), generator=gen, impl="fast" if impl == "fast" else "dense")
            loss = res["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    rss0 = _rss_mb()
    losses = []
    if iters > 1:
        losses.append(step(0))  # warm-up (allocator, cuDNN autotune)
    times = []
    for i in range(iters):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        losses.append(step(i + 1))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
        kind = "cuda_max_allocated_MiB"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - rss0
        kind = "cpu_peak_rss_increase_MiB"
    return {"stage": stage, "scale": scale, "impl": impl, "device": str(dev), "image_size": [w, h], "batch": b,
            "iters": iters, "seconds_per_iteration": sum(times) / len(times), "peak_memory_MiB": peak,
            "memory_kind": kind, "loss": losses[-1], "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", nargs="+", default=["demo", "paper"], choices=list(SCALES))
    p.add_argument("--stages", nargs="+", default=["desc", "kp"], choices=["desc", "kp"])
    p.add_argument("--impls", nargs="+", default=["fast", "reference"], choices=["fast", "reference"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--paper-cpu-batch", type=int, default=1, help="pairs per batch at paper scale on a CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--case", nargs=5, metavar=("STAGE", "SCALE", "IMPL", "ITERS", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.case:  # child process: one case, JSON on the last stdout line
        stage, scale, impl, iters, batch = args.case
        res = run_case(stage, scale, impl, int(iters), args.device, int(batch) or None)
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
                cmd = [sys.executable, __file__, "--device", str(dev), "--case", stage, scale, impl, str(iters), str(batch)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
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
                summary.append({"scale": scale, "stage": stage,
                                "speedup": r["seconds_per_iteration"] / f["seconds_per_iteration"],
                                "memory_ratio": r["peak_memory_MiB"] / max(f["peak_memory_MiB"], 1e-9)})
    print(f"\n{'scale':6} {'stage':5} {'impl':9} {'batch':>5} {'s/iter':>9} {'peak MiB':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['scale']:6} {r['stage']:5} {r['impl']:9} error: {r['error']}")
        else:
            print(f"{r['scale']:6} {r['stage']:5} {r['impl']:9} {r['batch']:5d} {r['seconds_per_iteration']:9.3f} "
                  f"{r['peak_memory_MiB']:9.1f}")
    for s in summary:
        print(f"{s['scale']:6} {s['stage']:5} reference/fast: time ×{s['speedup']:.2f}, memory ×{s['memory_ratio']:.2f}")
    if args.out:
        from posfeat.io import write_json

        write_json(args.out, {"machine": platform.node(), "processor": platform.processor(),
                              "cpu_count": os.cpu_count(), "results": results, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
