"""Benchmark of the demo world: generation time and size at the default sizes, and its ground-truth quality.

    python -m benchmarks.speed.bench_demo [--seed 0] [--keep DIR] [--json out.json] [--no-sift]

Renders the demo world (``posfeat.demo.DEFAULT_SIZES``, the sizes of ``params.yaml``'s ``demo``
section) into a temporary folder, reports the wall-clock time and the size on disk per dataset, then
measures how well the written ground truth agrees with OpenCV SIFT matches (ratio test 0.8), per dataset:

* MegaDepth: symmetric epipolar error of the pairs in ``pairs.txt`` (all pairs, and pairs up to 45° apart);
* Aachen: query–db pairs of the pair list, day and night, with the GT query poses and the pycolmap model;
* HPatches: homography transfer error, ``v_*`` and ``i_*``;
* ETH: symmetric epipolar error between neighbouring views of ``gt_cameras.txt``.

Figures are medians over all ratio-test matches (outliers included) and the fraction under 1 px.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from posfeat.datasets.aachen import load_queries, read_ground_truth
from posfeat.datasets.aachen import read_pairs as read_pairs_aachen
from posfeat.datasets.camera import qvec_to_rotmat
from posfeat.datasets.eth import list_scenes, read_gt_cameras
from posfeat.datasets.hpatches import list_sequences, load_sequence
from posfeat.datasets.megadepth import find_scenes, read_img_cam, read_pairs
from posfeat.demo import DEFAULT_SIZES, generate_demo
from posfeat.geometry import (
    apply_homography_np,
    fundamental_from_poses,
    rotation_angle_deg,
    symmetric_epipolar_distance_np,
)


class SiftMatcher:
    """OpenCV SIFT with a per-image cache and Lowe's ratio test."""

    def __init__(self, ratio: float = 0.8):
        self.sift = cv2.SIFT_create()
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)
        self.ratio = ratio
        self.cache: dict[Path, tuple[np.ndarray, np.ndarray | None]] = {}

    def features(self, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
        if path not in self.cache:
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise FileNotFoundError(f"{path}: cannot read image")
            kps, desc = self.sift.detectAndCompute(img, None)
            self.cache[path] = (np.array([k.pt for k in kps], np.float64).reshape(-1, 2), desc)
        return self.cache[path]

    def match(self, a: Path, b: Path) -> tuple[np.ndarray, np.ndarray]:
        (xa, da), (xb, db) = self.features(a), self.features(b)
        if da is None or db is None or len(da) < 2 or len(db) < 2:
            return np.zeros((0, 2)), np.zeros((0, 2))
        knn = self.matcher.knnMatch(da, db, k=2)
        m = np.array(
            [[p[0].queryIdx, p[0].trainIdx] for p in knn if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        ).reshape(-1, 2)
        return xa[m[:, 0]], xb[m[:, 1]]


def _stats(errs: list[np.ndarray], n_pairs: int) -> dict:
    e = np.concatenate(errs) if errs else np.zeros(0)
    per_pair = [float(np.median(x)) for x in errs if len(x)]
    return {
        "pairs": n_pairs,
        "matches": int(len(e)),
        "median_px": float(np.median(e)) if len(e) else float("nan"),
        "frac_below_1px": float((e < 1.0).mean()) if len(e) else float("nan"),
        "pairs_with_median_below_1px": float(np.mean(np.array(per_pair) < 1.0)) if per_pair else float("nan"),
    }


def megadepth_agreement(root: Path, sm: SiftMatcher, max_rot_deg: float | None = None) -> dict:
    errs = []
    for scene in find_scenes(root):
        cams = read_img_cam(scene.path / "img_cam.txt")
        for a, b in read_pairs(scene.path / "pairs.txt", known=cams):
            ca, cb = cams[a], cams[b]
            if max_rot_deg is not None and rotation_angle_deg(cb.R @ ca.R.T) > max_rot_deg:
                continue
            xa, xb = sm.match(scene.path / "images" / a, scene.path / "images" / b)
            errs.append(
                symmetric_epipolar_distance_np(xa, xb, fundamental_from_poses(ca.K, ca.R, ca.t, cb.K, cb.R, cb.t))
            )
    return _stats(errs, len(errs))


def aachen_agreement(root: Path, sm: SiftMatcher) -> dict:
    images = root / "images" / "images_upright"
    rec = pycolmap.Reconstruction(str(root / "3D-models" / "aachen_v_1_1"))
    db = {}
    for im in rec.images.values():
        P = im.cam_from_world().matrix()
        db[im.name] = (rec.cameras[im.camera_id].calibration_matrix(), P[:, :3], P[:, 3])
    queries = {q.name: q for q in load_queries(root)}
    truth = read_ground_truth(root / "queries" / "ground_truth_queries.txt")
    errs: dict[str, list[np.ndarray]] = {"day": [], "night": []}
    for a, b in read_pairs_aachen(root / "others" / "image_pairs_to_match_v1_1.txt"):
        if a not in queries:
            continue
        q = queries[a]
        F = fundamental_from_poses(
            q.to_pycolmap().calibration_matrix(), qvec_to_rotmat(truth[a][0]), truth[a][1], *db[b]
        )
        xa, xb = sm.match(images / a, images / b)
        errs[q.condition].append(symmetric_epipolar_distance_np(xa + 0.5, xb + 0.5, F))  # COLMAP: +0.5
    return {cond: _stats(e, len(e)) for cond, e in errs.items()}


def hpatches_agreement(root: Path, sm: SiftMatcher) -> dict:
    out = {}
    for kind in ("v_", "i_"):
        errs = []
        for name in [n for n in list_sequences(root, exclude=()) if n.startswith(kind)]:
            for im1, imk, H in load_sequence(root, name).pairs():
                x1, xk = sm.match(root / im1, root / imk)
                errs.append(np.linalg.norm(apply_homography_np(H, x1) - xk, axis=1))
        out[kind.rstrip("_")] = _stats(errs, len(errs))
    return out


def eth_agreement(root: Path, sm: SiftMatcher) -> dict:
    errs = []
    for scene in list_scenes(root):
        cams = read_gt_cameras(root / scene)
        names = sorted(cams)
        for a, b in zip(names[:-1], names[1:]):
            ca, cb = cams[a], cams[b]
            xa, xb = sm.match(root / scene / "images" / a, root / scene / "images" / b)
            errs.append(
                symmetric_epipolar_distance_np(xa, xb, fundamental_from_poses(ca.K, ca.R, ca.t, cb.K, cb.R, cb.t))
            )
    return _stats(errs, len(errs))


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="render into this (new) folder and keep it")
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--no-sift", action="store_true", help="only time the generation")
    args = ap.parse_args()

    tmp = None
    if args.keep:
        root = Path(args.keep)
    else:
        tmp = tempfile.mkdtemp(prefix="bench_demo_")
        root = Path(tmp) / "demo"
    try:
        t0 = time.perf_counter()
        summary = generate_demo(root, seed=args.seed)
        seconds = time.perf_counter() - t0
        result = {
            "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in DEFAULT_SIZES.items()},
            "generation_s": round(seconds, 2),
            "size_mb": {d: round(_size_mb(root / d), 2) for d in ("megadepth", "hpatches", "aachen", "eth")},
            "megadepth_pairs": sum(s["pairs"] for s in summary["megadepth"]["scenes"].values()),
            "megadepth_pairs_over_80deg": sum(s["pairs_over_80deg"] for s in summary["megadepth"]["scenes"].values()),
            "aachen": summary["aachen"],
        }
        result["size_mb"]["total"] = round(sum(result["size_mb"].values()), 2)
        print(f"generation: {seconds:.1f} s, {result['size_mb']['total']:.1f} MB  {result['size_mb']}")
        if not args.no_sift:
            t1 = time.perf_counter()
            sm = SiftMatcher()
            result["sift"] = {
                "megadepth_all_pairs": megadepth_agreement(root / "megadepth", sm),
                "megadepth_rot_le_45deg": megadepth_agreement(root / "megadepth", sm, 45.0),
                "aachen": aachen_agreement(root / "aachen", sm),
                "hpatches": hpatches_agreement(root / "hpatches", sm),
                "eth": eth_agreement(root / "eth", sm),
            }
            result["sift_s"] = round(time.perf_counter() - t1, 1)
            flat = {
                "megadepth (all pairs)": result["sift"]["megadepth_all_pairs"],
                "megadepth (rot <= 45 deg)": result["sift"]["megadepth_rot_le_45deg"],
                "aachen day (query-db)": result["sift"]["aachen"]["day"],
                "aachen night (query-db)": result["sift"]["aachen"]["night"],
                "hpatches v_": result["sift"]["hpatches"]["v"],
                "hpatches i_": result["sift"]["hpatches"]["i"],
                "eth (neighbours)": result["sift"]["eth"],
            }
            print(
                f"{'SIFT vs ground truth':28s} {'pairs':>6s} {'matches':>8s} {'median px':>10s} {'<1px':>6s} "
                f"{'pairs med<1':>12s}"
            )
            for k, s in flat.items():
                print(
                    f"{k:28s} {s['pairs']:6d} {s['matches']:8d} {s['median_px']:10.3f} {s['frac_below_1px']:6.2f} "
                    f"{s['pairs_with_median_below_1px']:12.2f}"
                )
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
