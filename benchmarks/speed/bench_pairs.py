"""Per-unit cost of the real benchmarks: one image pair matched, one pair verified, at real keypoint counts.

    python -m benchmarks.speed.bench_pairs --keypoints 20480 --threads 1 2 --out benchmarks/results/bench_pairs.json
    python -m benchmarks.speed.bench_pairs --device cuda          # matching on a GPU (verification stays on the CPU)

* **matching**: the study's mutual nearest neighbour (:func:`posfeat.matching.match_descriptors`) of two
  N×128 descriptor sets, without and with the two-sided ratio test (two products), with torch on 1, 2, …
  threads, next to the bare matrix product ``D1 @ D2ᵀ`` in the same blocks with one cheap reduction (2·N²·128
  FLOP), which matching cannot beat: the ratio says how close it runs to what the machine's GEMM delivers;
* **verification**: ``pycolmap.verify_matches`` (COLMAP's ``matches_importer``, all cores) of pairs with
  N keypoints and M putative matches of which a fraction are true (a synthetic two-view scene with an exact
  fundamental matrix, keypoints at image scale, 0.5 px noise), with hloc's RANSAC settings (20000 trials,
  inlier ratio 0.1) and COLMAP's (10000, 0.25). Seconds per pair and pairs per second.

The cost tables of docs/cost.md multiply these figures by each dataset's number of pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from posfeat.matching import match_descriptors
from posfeat.sfm import colmap, verification

ROOT = Path(__file__).resolve().parents[2]


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_matching(n: int, dim: int, threads: int, device: str, repeats: int) -> dict:
    """Mutual NN of two random unit-norm n×dim sets, and the bare GEMM, with ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    d1 = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1).to(device)
    d2 = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def mnn():
        match_descriptors(d1, d2, mutual=True, device=device)
        sync()

    def ratio():
        match_descriptors(d1, d2, mutual=True, ratio=0.75, device=device)
        sync()

    def gemm():  # the product alone, in the matcher's blocks, each reduced by its cheapest pass
        bs = 64 if device == "cpu" else 4096
        for s in range(0, n, bs):
            (d1[s : s + bs] @ d2.T).amax(1)
        sync()

    mnn()
    t_mnn, t_ratio, t_gemm = _best_of(mnn, repeats), _best_of(ratio, repeats), _best_of(gemm, repeats)
    flop = 2.0 * n * n * dim
    return {
        "threads": threads,
        "device": device,
        "keypoints": n,
        "seconds_per_pair": t_mnn,
        "pairs_per_second": 1.0 / t_mnn,
        "ratio_seconds_per_pair": t_ratio,
        "gemm_seconds": t_gemm,
        "gflops_matching": flop / t_mnn / 1e9,
        "gflops_gemm": flop / t_gemm / 1e9,
    }


def _synthetic_pair(rng, n: int, m: int, inlier_ratio: float, size=(1600, 1200)):
    """Keypoints of two views of a random 3D scene and ``m`` putative matches, ``inlier_ratio`` of them true."""
    w, h = size
    K = np.array([[1.2 * w, 0, w / 2], [0, 1.2 * w, h / 2], [0, 0, 1.0]])
    X = np.c_[rng.uniform(-4, 4, (n, 2)), rng.uniform(8, 14, n)]
    ang = np.radians(12)
    R = np.array([[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]])
    t = np.array([-2.0, 0.2, 0.4])

    def project(P):
        x = (K @ P.T).T
        return x[:, :2] / x[:, 2:]

    k1 = project(X) + rng.normal(0, 0.5, (n, 2))
    k2 = project((R @ X.T).T + t) + rng.normal(0, 0.5, (n, 2))
    n_in = int(round(m * inlier_ratio))
    idx = rng.choice(n, m, replace=False)
    wrong = rng.choice(n, m - n_in)
    matches = np.c_[idx, np.r_[idx[:n_in], wrong]]
    return k1, k2, matches


def bench_verification(n: int, m: int, inlier_ratio: float, pairs: int, settings: dict, seed: int = 0) -> dict:
    """Seconds per pair of ``pycolmap.verify_matches`` over ``pairs`` independent synthetic pairs."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "db.db"
        db = colmap.create_database(db_path)
        names = []
        try:
            for p in range(pairs):
                k1, k2, matches = _synthetic_pair(rng, n, m, inlier_ratio)
                ids = []
                for k, kp in ((0, k1), (1, k2)):
                    name = f"p{p}_{k}.jpg"
                    ids.append(colmap.add_image(db, name, colmap.add_camera(db, colmap.guess_camera(1600, 1200))))
                    colmap.import_keypoints(db, ids[-1], kp)
                    names.append(name)
                colmap.import_matches(db, ids[0], ids[1], matches)
        finally:
            db.close()
        pair_file = Path(tmp) / "pairs.txt"
        colmap.write_pairs_file(pair_file, [(names[2 * p], names[2 * p + 1]) for p in range(pairs)])
        opts = verification.two_view_geometry_options(4.0, 15, 0, **settings)
        t0 = time.perf_counter()
        with colmap.colmap_log_level(False):
            verification.verify_pairs(db_path, pair_file, opts)
        dt = time.perf_counter() - t0
        db = colmap.pycolmap.Database.open(str(db_path))
        try:
            inliers = verification.verification_stats(db).num_inlier_matches / pairs
        finally:
            db.close()
    return {
        "keypoints": n,
        "matches": m,
        "inlier_ratio": inlier_ratio,
        "pairs": pairs,
        **settings,
        "seconds_per_pair": dt / pairs,
        "pairs_per_second": pairs / dt,
        "inliers_per_pair": inliers,
        "cores": os.cpu_count(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keypoints", type=int, default=20480)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--matches", type=int, default=6000, help="putative matches per verified pair")
    p.add_argument("--inlier-ratio", type=float, default=0.3)
    p.add_argument("--pairs", type=int, default=8, help="verified pairs (verification runs them on all cores)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_pairs.json"))
    args = p.parse_args()
    report = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "matching": [],
        "verification": [],
    }
    for th in args.threads:
        row = bench_matching(args.keypoints, args.dim, th, args.device, args.repeats)
        print(json.dumps(row), flush=True)
        report["matching"].append(row)
    for name, settings in (
        ("hloc", {"max_num_trials": 20000, "min_inlier_ratio": 0.1}),
        ("colmap", {"max_num_trials": 10000, "min_inlier_ratio": 0.25}),
    ):
        row = {
            "settings": name,
            **bench_verification(args.keypoints, args.matches, args.inlier_ratio, args.pairs, settings),
        }
        print(json.dumps(row), flush=True)
        report["verification"].append(row)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
