"""Accuracy of reconstruction without camera priors, over seeds: the mapper alone against self-calibration.

A collection of photos without EXIF is cut from a calibrated real scene (:func:`posfeat.datasets.internet.
make_collection`: centre crops of 30-100 % rescaled to 600-1100 px, so the true focal lengths are 0.6-2.4x
COLMAP's guess), given SIFT features, and reconstructed by the ETH pipeline (exhaustive pairs, two-view
focal initialisation, one thread) for each seed, once with ``self_calibration_rounds`` 0 (COLMAP's mapper
alone) and once with the default 3. Per run: registered images, median rotation error, pose AUC@5/10/20,
median and largest focal error against the true cameras, and the self-calibration rounds. A third
variant holds the true focal lengths fixed (the accuracy the features allow).

    python -m benchmarks.experiments.no_exif_spread --scenes Entry --seeds 0 1 2 3 4 \
        --out benchmarks/results/no_exif_entry.json
    python -m benchmarks.experiments.no_exif_spread --scenes Castle --seeds 0 1 2 \
        --out benchmarks/results/no_exif_castle.json

The scenes are benchmark test scenes (Strecha): they are only evaluated here, never trained on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENES = {
    "Entry": "megadepth-strecha/strecha_entry/dense0/aligned",
    "Castle": "megadepth-strecha/strecha_castle/dense0/aligned",
}
KEYS = ("num_reg_images", "median_rotation_error_deg", "pose_auc@5", "pose_auc@10", "median_focal_error",
        "max_focal_error")  # fmt: skip


def _sift(images: Path, out: Path) -> Path:
    """OpenCV SIFT features (4096 per image) of every image of ``images`` on the CPU."""
    from posfeat.extraction import ExtractConfig, extract_dataset

    names = sorted(p.name for p in images.iterdir())
    extract_dataset("sift", images, names, out, config=ExtractConfig(max_keypoints=4096), device="cpu", progress=False)
    return out


def _true_focals(scene: Path, work: Path):
    """An ETH config hook: the database's cameras get the true focal lengths as fixed priors."""
    import numpy as np
    import pycolmap

    from posfeat.datasets.eth import read_gt_cameras

    gt = read_gt_cameras(scene)
    db = pycolmap.Database.open(str(work / "database.db"))
    try:
        names = {im.camera_id: im.name for im in db.read_all_images()}
        for cam in db.read_all_cameras():
            p = np.asarray(cam.params, np.float64).copy()
            p[0] = gt[names[cam.camera_id]].K[0, 0]
            cam.params, cam.has_prior_focal_length = p, True
            db.update_camera(cam)
    finally:
        db.close()


def run(scene: Path, feats: Path, seed: int, variant: str, work: Path, fallback: bool = True) -> dict:
    """One reconstruction of ``scene``: ``mapper`` | ``self_calibration`` | ``true_focals``; ``fallback``: the
    mapper's structure-less registration."""
    from posfeat.evaluation.eth import evaluate as eth
    from posfeat.evaluation.poses import pose_accuracy
    from posfeat.sfm import colmap, reconstruction

    t0 = time.perf_counter()
    if variant == "true_focals":  # the pipeline up to verification, then the mapper with the true cameras held
        cfg = eth.ETHConfig(num_threads=1, seed=seed, self_calibration_rounds=0, focal_init="guess",
                            structure_less_fallback=fallback)  # fmt: skip
        eth.evaluate_scene(scene, feats, work, cfg, device="cpu", progress=False)
        _true_focals(scene, work)
        opts = colmap.mapper_options(num_threads=1, seed=seed, refine_intrinsics=False,
                                     structure_less_fallback=fallback)  # fmt: skip
        rec, _, _, _ = reconstruction.reconstruct(work / "database.db", scene / "images", work / "held", opts, 10**6, 1)
        stats = {"num_reg_images": rec.num_reg_images(), **pose_accuracy(rec, eth.read_gt_cameras(scene))}
        stats["mapping"] = {"self_calibration": []}
    else:
        rounds = 3 if variant == "self_calibration" else 0
        cfg = eth.ETHConfig(num_threads=1, seed=seed, self_calibration_rounds=rounds, structure_less_fallback=fallback)
        stats = eth.evaluate_scene(scene, feats, work, cfg, device="cpu", progress=False).stats
    out = {k: stats.get(k) for k in KEYS}
    out["self_calibration_rounds"] = len(stats["mapping"]["self_calibration"])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", nargs="+", default=["mapper", "self_calibration", "true_focals"])
    ap.add_argument("--scenes", nargs="+", choices=sorted(SCENES), default=list(SCENES))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "no_exif_spread.json")
    ap.add_argument("--no-structure-less-fallback", dest="fallback", action="store_false",
                    help="map without COLMAP's structure-less registration fallback")  # fmt: skip
    args = ap.parse_args()
    from posfeat.datasets.internet import make_collection

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "date": time.strftime("%Y-%m-%d"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "structure_less_fallback": args.fallback,
        "scenes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenes:
            rel = SCENES[name]
            scene = Path(tmp) / name
            ratios = make_collection(args.shared / rel, scene)
            feats = _sift(scene / "images", Path(tmp) / f"{name}.h5")
            res = {"true_focal_over_guess": [round(r, 3) for r in ratios], "runs": {}}
            for variant in args.variants:
                runs = {
                    s: run(scene, feats, s, variant, Path(tmp) / f"{name}_{variant}_{s}", args.fallback)
                    for s in args.seeds
                }
                res["runs"][variant] = runs
                for s, r in runs.items():
                    print(name, variant, s, json.dumps(r), flush=True)
                rot = [
                    r["median_rotation_error_deg"] for r in runs.values() if r["median_rotation_error_deg"] is not None
                ]
                res[variant] = {"rotation_error_deg": [min(rot), statistics.median(rot), max(rot)] if rot else None}
                result["scenes"][name] = res
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1) + "\n")  # after every variant
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
