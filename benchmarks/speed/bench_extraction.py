"""Speed of feature extraction and matching (a measurement, not a test).

    python -m benchmarks.speed.bench_extraction                       # CPU (or CUDA when present), short
    python -m benchmarks.speed.bench_extraction --device cpu --reps 3 --out bench.json

Extraction: images/s of :func:`posfeat.extraction.extract_posfeat` (network + NMS + sub-pixel + descriptor
sampling) at 640×480 and 1024×768 for the demo model (``encoder: small``) and the paper's model
(ResNet-50 ResUNet + full-resolution detector head, untrained weights: speed does not depend on them),
next to OpenCV SIFT (default parameters, 8192 keypoints) on the same images. Matching: mutual-NN pairs/s
of :func:`posfeat.matching.match_descriptors` at 8192 × 8192 128-D descriptors (the HPatches setting),
without and with the ratio test. Images are random textures (blurred noise), so NMS leaves many peaks.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import cv2
import numpy as np
import torch

from posfeat.extraction import ExtractConfig, extract_posfeat, extract_sift
from posfeat.matching import match_descriptors
from posfeat.models import build_model
from posfeat.utils import resolve_device

MODELS = {
    "demo (daisy)": {"encoder": "daisy", "desc_dim": 200},
    "small (sweeps 1-9)": {"encoder": "small"},
    "paper (resnet50)": {"encoder": "resnet50"},
}
SIZES = {"640x480": (640, 480), "1024x768": (1024, 768), "1600x1200": (1600, 1200)}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _image(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 2.0)


def _rate(fn, reps: int, dev: torch.device) -> float:
    """Calls per second of ``fn`` after one warm-up call (median of ``reps`` timings)."""
    fn()
    _sync(dev)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return 1.0 / float(np.median(times))


def bench_extraction(dev: torch.device, reps: int, models: list[str], sizes: list[str]) -> list[dict]:
    rows = []
    cfg = ExtractConfig(max_keypoints=8192, nms_radius=1, threshold=None, threshold_mode=None)
    for size in sizes:
        w, h = SIZES[size]
        img = _image(w, h)
        rate = _rate(lambda: extract_sift(img, 8192), reps, torch.device("cpu"))
        rows.append({"what": "extract", "model": "OpenCV SIFT (CPU)", "size": size, "images_per_s": rate})
        print(f"extract {size:>9}  {'OpenCV SIFT (CPU)':<18} {rate:8.3f} images/s", flush=True)
        for name in models:
            torch.manual_seed(0)
            model = build_model(MODELS[name]).to(dev).eval()
            rate = _rate(lambda: extract_posfeat(model, img, cfg, dev), reps, dev)
            rows.append({"what": "extract", "model": name, "size": size, "images_per_s": rate})
            print(f"extract {size:>9}  {name:<18} {rate:8.3f} images/s", flush=True)
            model = None  # free it before the next size
    return rows


def bench_matching(dev: torch.device, reps: int, n: int = 8192) -> list[dict]:
    rng = np.random.default_rng(0)
    d0 = rng.standard_normal((n, 128)).astype(np.float32)
    d0 /= np.linalg.norm(d0, axis=1, keepdims=True)
    d1 = d0[rng.permutation(n)] + 0.05 * rng.standard_normal((n, 128)).astype(np.float32)
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    t0, t1 = torch.from_numpy(d0).to(dev), torch.from_numpy(d1).to(dev)
    rows = []
    for label, ratio in (("mutual NN", None), ("mutual NN + ratio 0.75", 0.75)):
        rate = _rate(lambda: match_descriptors(t0, t1, mutual=True, ratio=ratio, device=dev), reps, dev)
        rows.append({"what": "match", "model": label, "size": f"{n}x{n}", "pairs_per_s": rate})
        print(f"match   {n}x{n}  {label:<24} {rate:8.3f} pairs/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions after one warm-up (median)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    info = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
    }
    print(json.dumps(info))
    rows = bench_extraction(dev, args.reps, args.models, args.sizes) + bench_matching(dev, args.reps)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
