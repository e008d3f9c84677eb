"""The GPU check (issue 11): CUDA tests, paper-scale training steps, extraction, matching, a DDP step → JSON.

    benchmarks/gpu_check.sh                        # on a CUDA machine, ≤ 8 min on one GPU
    benchmarks/gpu_check.sh --device cpu --tiny    # dry run of every part at a tiny size, on a CPU

Sections (each one in its own process, so that a crash or a timeout of one is recorded and the others run;
the report is rewritten after each section, so a killed run still leaves what it measured):

* ``cuda_tests``: the tests that skip without CUDA (``pytest -k "cuda or gpu"``);
* ``training``: one stage-1 and one stage-2 step at paper scale (ResNet-50, 640×480, batch 8 / 6, the
  paper's detector; random weights and images, a real camera pair's epipolar geometry), in bf16 autocast
  and in float32, via ``benchmarks/bench_training.py``: seconds per step (mean of 3 after a warm-up),
  the loss's share of a step and the peak memory (``torch.cuda.max_memory_allocated``);
* ``extraction``: PoSFeat on one 1600×1200 image (paper model, 20480 keypoints at most), seconds and peak memory;
* ``matching``: mutual nearest neighbours of 20480 × 20480 128-D descriptors;
* ``train_real``: about 3 minutes of real paper-scale stage-1 training on demo-world photographs at 640×480
  (rendered first), with the loss of every step;
* ``ddp``: one stage-1 step (after a warm-up) under ``torchrun --nproc_per_node=2`` (NCCL, SyncBatchNorm),
  when two GPUs are visible; ``--tiny --device cpu`` runs it with gloo on the CPU.

Without CUDA (and without ``--device cpu``) it stops at once with exit status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAPER = {"extract_size": (1600, 1200), "max_keypoints": 20480, "match_n": 20480, "scale": "paper"}
TINY = {"extract_size": (320, 240), "max_keypoints": 2048, "match_n": 2048, "scale": "demo"}
SECTION_TIMEOUT = {"cuda_tests": 90, "training": 60, "extraction": 45, "matching": 30, "train_real": 240, "ddp": 90}
"""seconds per child process; one GPU: at most 90 + 4·60 + 45 + 30 + 240 = 645 s even if every part hangs
(typically about 7 minutes: the real training is given 180 s, the rest takes seconds each)"""


def _env() -> dict:
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


# ------------------------------------------------------------------------------------- child parts
def part_extraction(device: str, size: tuple[int, int], max_keypoints: int, model_scale: str) -> dict:
    import numpy as np
    import torch

    from benchmarks.bench_training import SCALES
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
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {
        "image_size": [w, h],
        "model": SCALES[model_scale]["model"],
        "seconds_per_image": sum(times) / len(times),
        "seconds_all": times,
        "keypoints": int(len(feats["keypoints"])),
        "peak_memory_MiB": peak,
        "precision": "float32",
    }


def part_matching(device: str, n: int) -> dict:
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
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {
        "n": n,
        "dim": 128,
        "seconds_per_pair": sum(times) / len(times),
        "seconds_all": times,
        "matches": int(len(m)),
        "peak_memory_MiB": peak,
    }


def part_train_real(device: str, scale: str, seconds: float, scenes: int, images: int) -> dict:
    """Real stage-1 training on demo-world photographs (rendered here, 640×480 MegaDepth layout) for about
    ``seconds``: the study's trainer at ``scale`` (paper: ResNet-50, batch 8, train-mode BatchNorm, two backbone
    passes, float32, no ImageNet weights), in chunks of steps resumed from its checkpoint until the time is
    spent. Returns the loss of every step (the curve), seconds per step and the peak memory."""
    import tempfile

    import torch

    from benchmarks.bench_training import DESC_LOSS, SCALES
    from posfeat.data.demo import write_megadepth
    from posfeat.data.prepare import prepare_megadepth
    from posfeat.training import TrainingInterrupted, train

    spec = SCALES[scale]
    (w, h), batch = spec["desc"]
    freeze_bn, passes = spec["bn"]
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_megadepth(tmp / "megadepth", 0, scenes, images, (640, 480))
        index, _ = prepare_megadepth(tmp / "megadepth", seed=0)
        render_s = time.perf_counter() - t0
        cfg = dict(
            image_size=[w, h],
            batch_size=batch,
            epochs=1,
            steps_per_epoch=100000,
            lr_decay_step=9,
            lr_gamma=0.1,
            log_every=1,
            vis_every=10**9,
            checkpoint_every=10**9,
            num_workers=2,
            color_jitter=[1.0, 1.0, 1.0, 0.4],
            freeze_bn=freeze_bn,
            backbone_passes=passes,
            **DESC_LOSS,
        )
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        chunk, steps, t_train = 5, 0, time.perf_counter()
        while time.perf_counter() - t_train < seconds:
            cfg["checkpoint_every"] = steps + chunk  # a checkpoint at the end of each chunk, to resume from
            try:
                train(
                    "desc",
                    index,
                    cfg,
                    out_model=tmp / "desc.pt",
                    ckpt_dir=tmp / "ckpt",
                    live_dir=tmp / "live",
                    model_config=spec["model"],
                    optimizer="adam",
                    lr=1e-4,
                    seed=0,
                    device=device,
                    progress=False,
                    stop_after=chunk,
                )
            except TrainingInterrupted:
                pass
            steps += chunk
        elapsed = time.perf_counter() - t_train
        rows = (tmp / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
        losses = [float(r.split("\t")[-1]) for r in rows]
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {
        "scale": scale,
        "image_size": [w, h],
        "batch": batch,
        "steps": steps,
        "seconds": elapsed,
        "seconds_per_step": elapsed / max(steps, 1),
        "render_seconds": render_s,
        "pairs": len(index["train"]),
        "loss_curve": losses,
        "peak_memory_MiB": peak,
        "precision": "float32",
    }


def part_ddp_worker(device: str, scale: str, global_batch: int) -> dict | None:
    """One rank of ``torchrun``: a warm-up and a timed stage-1 step with DDP (SyncBatchNorm on CUDA)."""
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from benchmarks.bench_training import DESC_LOSS, SCALES, _fundamentals
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
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None
        res = {
            "world_size": info.world_size,
            "backend": dist.get_backend(),
            "global_batch": global_batch,
            "image_size": [w, h],
            "seconds_per_step": times[-1],
            "warmup_seconds": times[0],
            "loss": loss,
            "replicas_agree": agree,
            "peak_memory_MiB_rank0": peak,
        }
        return res if info.is_main else None
    finally:
        if info.owner:
            dist.destroy_process_group()


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu (dry run; use with --tiny)")
    p.add_argument("--tiny", action="store_true", help="demo-scale sizes (a dry run of every part)")
    p.add_argument(
        "--out",
        help="JSON report (default: $OUT/gpu_check.json where OUT is set, as on a lent device "
        "machine, else benchmarks/results/gpu_check-<time>.json)",
    )
    p.add_argument("--skip", nargs="*", default=[], choices=list(SECTION_TIMEOUT), help="sections to leave out")
    p.add_argument("--part", nargs="+", help=argparse.SUPPRESS)  # child processes
    args = p.parse_args(argv)

    if args.part:
        kind, rest = args.part[0], args.part[1:]
        if kind == "extraction":
            res = part_extraction(args.device, (int(rest[0]), int(rest[1])), int(rest[2]), rest[3])
        elif kind == "matching":
            res = part_matching(args.device, int(rest[0]))
        elif kind == "train_real":
            res = part_train_real(args.device, rest[0], float(rest[1]), int(rest[2]), int(rest[3]))
        elif kind == "ddp":
            res = part_ddp_worker(args.device, rest[0], int(rest[1]))
        else:
            raise SystemExit(f"unknown part {kind!r}")
        if res is not None:
            print(json.dumps(res))
        return 0

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"gpu_check: CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "nothing was measured. On a CPU, `benchmarks/gpu_check.sh --device cpu --tiny` is a dry run.",
            file=sys.stderr,
        )
        return 2
    if args.device == "cpu" and not args.tiny:
        print(
            "gpu_check: --device cpu runs only with --tiny (paper scale on a CPU takes far too long)", file=sys.stderr
        )
        return 2
    sizes = TINY if args.tiny else PAPER
    default = (
        Path(os.environ["OUT"]) / "gpu_check.json"
        if os.environ.get("OUT")
        else ROOT / "benchmarks" / "results" / f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out = Path(args.out) if args.out else default
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": args.device,
        "tiny": args.tiny,
        **_versions(),
        "sections": {},
    }
    t_start = time.perf_counter()
    from posfeat.io import write_json

    def save():
        report["total_seconds"] = round(time.perf_counter() - t_start, 1)
        write_json(out, report)

    py = sys.executable
    me = str(Path(__file__).resolve())
    dev = ["--device", args.device]
    cpu_threads = {} if args.device != "cpu" else {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    os.environ.update(cpu_threads)

    if "cuda_tests" not in args.skip:
        if args.device == "cpu":
            report["sections"]["cuda_tests"] = {"skipped": "no CUDA (dry run)"}
        else:
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    [py, "-m", "pytest", "-q", "-rs", "-m", "not slow", "-k", "cuda or gpu", "tests"],
                    capture_output=True,
                    text=True,
                    timeout=SECTION_TIMEOUT["cuda_tests"],
                    env=_env(),
                    cwd=ROOT,
                )
                lines = proc.stdout.strip().splitlines()
                report["sections"]["cuda_tests"] = {
                    "returncode": proc.returncode,
                    "summary": lines[-1] if lines else "",
                    "seconds": round(time.perf_counter() - t0, 1),
                    "output_tail": proc.stdout[-2000:],
                }
            except subprocess.TimeoutExpired:
                report["sections"]["cuda_tests"] = {"error": f"timed out after {SECTION_TIMEOUT['cuda_tests']} s"}
        print(
            "cuda_tests:", report["sections"]["cuda_tests"].get("summary", report["sections"]["cuda_tests"]), flush=True
        )
        save()

    if "training" not in args.skip:
        rows = []
        bench = str(ROOT / "benchmarks" / "bench_training.py")
        for stage in ("desc", "kp"):
            for amp in (False,) if args.device == "cpu" else (True, False):
                iters = "2" if args.tiny else "3"
                cmd = [py, bench, *dev, "--case", stage, sizes["scale"], "fast", iters, "0"] + ["--amp"] * amp
                res = _run(cmd, SECTION_TIMEOUT["training"])
                res.setdefault("stage", stage)
                res.setdefault("amp", "bf16" if amp else "float32")
                res.pop("seconds_per_iteration_all", None)
                rows.append(res)
                print(
                    "training:",
                    {
                        k: res.get(k)
                        for k in ("stage", "amp", "seconds_per_iteration", "loss_share", "peak_memory_MiB", "error")
                    },
                    flush=True,
                )
                report["sections"]["training"] = rows
                save()

    if "extraction" not in args.skip:
        w, h = sizes["extract_size"]
        res = _run(
            [py, me, *dev, "--part", "extraction", str(w), str(h), str(sizes["max_keypoints"]), sizes["scale"]],
            SECTION_TIMEOUT["extraction"],
        )
        report["sections"]["extraction"] = res
        print(
            "extraction:",
            {k: res.get(k) for k in ("image_size", "seconds_per_image", "keypoints", "peak_memory_MiB", "error")},
            flush=True,
        )
        save()

    if "matching" not in args.skip:
        res = _run([py, me, *dev, "--part", "matching", str(sizes["match_n"])], SECTION_TIMEOUT["matching"])
        report["sections"]["matching"] = res
        print("matching:", {k: res.get(k) for k in ("n", "seconds_per_pair", "matches", "error")}, flush=True)
        save()

    if "train_real" not in args.skip:
        secs, scenes, imgs = ("180", "4", "12") if not args.tiny else ("1", "2", "5")
        res = _run(
            [py, me, *dev, "--part", "train_real", sizes["scale"], secs, scenes, imgs],
            SECTION_TIMEOUT["train_real"] if not args.tiny else 240,
        )
        report["sections"]["train_real"] = res
        print(
            "train_real:",
            {k: res.get(k) for k in ("steps", "seconds_per_step", "peak_memory_MiB", "error")},
            flush=True,
        )
        save()

    if "ddp" not in args.skip:
        n_gpu = torch.cuda.device_count() if args.device.startswith("cuda") else 0
        if args.device.startswith("cuda") and n_gpu < 2:
            res = {"skipped": f"{n_gpu} GPU visible; the DDP step needs 2"}
        else:
            batch = "8" if not args.tiny else "2"
            cmd = [
                py,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                me,
                *dev,
                "--part",
                "ddp",
                sizes["scale"],
                batch,
            ]
            res = _run(cmd, SECTION_TIMEOUT["ddp"])
        report["sections"]["ddp"] = res
        print(
            "ddp:",
            {
                k: res.get(k)
                for k in ("world_size", "backend", "seconds_per_step", "replicas_agree", "skipped", "error")
            },
            flush=True,
        )
        save()

    failed = [
        k
        for k, v in report["sections"].items()
        if (isinstance(v, dict) and ("error" in v or v.get("returncode", 0) != 0))
        or (isinstance(v, list) and any("error" in r for r in v))
    ]
    report["failed_sections"] = failed
    save()
    print(f"report: {out} ({report['total_seconds']} s){'; FAILED: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
