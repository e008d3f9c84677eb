"""Spread of the tests' trajectory-dependent quantities over seeds and thread counts (a script beside the tests
it measures, importing their helpers; not collected by pytest).

A test that asserts a tuned ratio on a training trajectory fails on the next CPU. This script measures
what those tests assert, for several seeds, under ``OMP_NUM_THREADS=1`` and ``2`` (each in its own
process, so that the thread count is fixed before torch starts), and writes one JSON:

* ``short_training``: stage-1 loss of a fixed batch after 60 SGD steps on one pair, over the loss
  before (``tests/test_training_loop.py::test_short_training_lowers_the_epipolar_loss``);
* ``amp_fraction``: the fall of that loss under bfloat16 autocast over its fall in float32
  (``test_amp_training_lowers_the_loss``);
* ``eth_*``: the demo ETH scene with SIFT (``tests/test_eth.py::test_demo_eth_scene_with_sift``): images
  registered, median rotation error, pose AUC@20 and mean reprojection error, the seed setting every random seed
  of the pipeline (RANSAC, mapper).

    python tests/threshold_spread.py --seeds 0 1 2 --threads 1 2 --out benchmarks/results/threshold_spread.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(seed: int) -> dict:
    """The quantities above for one seed, in this process."""
    import torch
    from conftest import SMALL_DEMO
    from test_training_loop import _fixed_loss
    from training_setup import LR, STEPS, TINY_MODEL, tiny_cfg

    from posfeat import utils
    from posfeat.demo import generate_demo
    from posfeat.models import build_model, load_checkpoint
    from posfeat.training import train
    from posfeat.trainset.prepare import prepare_megadepth

    utils.cpu_has_native_bf16 = lambda: True  # as the amp test: autocast even where bf16 is emulated
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_demo(tmp / "demo", seed=0, **SMALL_DEMO)
        idx, _ = prepare_megadepth(tmp / "demo" / "megadepth", seed=0)
        one = {**idx, "train": idx["train"][:1]}
        after = {}
        for amp in (False, True):
            cfg = tiny_cfg(
                "desc",
                steps_per_epoch=STEPS,
                checkpoint_every=100,
                batch_size=2,
                color_jitter=None,
                freeze_bn=True,
                amp=amp,
            )
            torch.manual_seed(seed)
            before = _fixed_loss(build_model(TINY_MODEL), one, cfg)
            out = tmp / f"amp{int(amp)}"
            train(
                "desc",
                one,
                cfg,
                out_model=out / "desc.pt",
                ckpt_dir=out / "ckpt",
                model_config=TINY_MODEL,
                optimizer="sgd",
                lr=LR,
                seed=seed,
                device="cpu",
                progress=False,
            )
            after[amp] = _fixed_loss(load_checkpoint(out / "desc.pt")[0], one, cfg)
        eth_stats = _eth_demo(tmp, seed)
    return {
        "before": before,
        "after_fp32": after[False],
        "after_bf16": after[True],
        "short_training": after[False] / before,
        "amp_fraction": (before - after[True]) / (before - after[False]),
        **eth_stats,
    }


def _eth_demo(tmp: Path, seed: int) -> dict:
    """The demo ETH scene of test_demo_eth_scene_with_sift, reconstructed with ``seed``."""
    from posfeat.datasets.eth import list_scene_images
    from posfeat.demo import write_eth_scene
    from posfeat.evaluation.eth import evaluate as eth
    from posfeat.extraction import ExtractConfig, extract_dataset

    root = tmp / "eth"
    scene, n = write_eth_scene(root, seed=0, k=0, n_images=12, size=(640, 480))
    names = [f"{scene}/{x}" for x in list_scene_images(root / scene)]
    extract_dataset(
        "sift", root, names, tmp / "eth.h5", config=ExtractConfig(max_keypoints=2048), device="cpu", progress=False
    )
    s = eth.evaluate_scene(
        root / scene,
        tmp / "eth.h5",
        tmp / "eth_work",
        eth.ETHConfig(num_threads=1, seed=seed),
        device="cpu",
        progress=False,
    ).stats
    return {
        "eth_registered": s["num_reg_images"] / n,
        "eth_rotation_deg": s["median_rotation_error_deg"],
        "eth_auc20": s["pose_auc@20"],
        "eth_reproj": s["mean_reproj_error"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/threshold_spread.json"))
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # worker: one seed, JSON on stdout
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return 0
    rows = []
    for threads in args.threads:
        for seed in args.seeds:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            res = subprocess.run(
                [sys.executable, __file__, "--one", str(seed)], env=env, capture_output=True, text=True, check=True
            )
            row = {"threads": threads, "seed": seed, **json.loads(res.stdout.strip().splitlines()[-1])}
            print(row, flush=True)
            rows.append(row)
    summary = {
        k: {"min": min(r[k] for r in rows), "max": max(r[k] for r in rows)}
        for k in ("short_training", "amp_fraction", "eth_registered", "eth_rotation_deg", "eth_auc20", "eth_reproj")
    }
    import platform

    Path(args.out).write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "rows": rows,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
