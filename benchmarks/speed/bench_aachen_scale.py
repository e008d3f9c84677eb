"""Aachen Day-Night v1.1 at real scale: time per 1000 pairs of the pipeline's phases, extrapolated to the release.

    python -m benchmarks.speed.bench_aachen_scale               # short run (CPU; GPU matching too if present)
    python -m benchmarks.speed.bench_aachen_scale --db-images 200 400 --keypoints 20480 --json out.json
    python -m benchmarks.speed.bench_aachen_scale --pairs-file AACHEN/others/image_pairs_to_match_v1_1.txt

A synthetic Aachen-like set stands in for the release (no image is rendered): a random 3D point cloud,
db cameras along a street looking at it, queries among them; each image's keypoints are projections of
its visible points (0.5 px noise) plus distractors, up to ``--keypoints``; each 3D point has its own
random descriptor (noisy per view), so mutual-NN matching and RANSAC see realistic inlier ratios. Pairs
follow the release's structure: each db image with its ``--db-neighbors`` nearest db images, each query
with ``--query-neighbors`` db images.

It times the library calls the ``eval_aachen`` stage makes, at several db sizes, to check that the cost
per pair and per image stays flat (nothing quadratic in the number of db images):

* database: cameras, images and keypoints (:mod:`posfeat.sfm.colmap`), per 1000 images;
* matching: :func:`posfeat.sfm.matching.match_and_import` (mutual NN, torch; CPU, and CUDA when present), per
  1000 pairs;
* verification: ``pycolmap.verify_matches`` (COLMAP's ``matches_importer``), per 1000 pairs;
* localization: ``pycolmap.estimate_and_refine_absolute_pose`` on the query's 2D–3D matches, per 1000 queries.

The triangulation of the fixed-pose reference (``point_triangulator``) is not timed here; it is linear in
the verified db–db matches and, on the demo, costs less than the verification.

Extrapolation to v1.1: 6697 db images, 1015 queries (824 day + 191 night) and the release's pair list.
Give ``--pairs-file`` to count the real list; without it the count assumes the structure above
(``db_neighbors`` per db image, de-duplicated, plus ``query_neighbors`` per query) and says so.
Not a test: run it by hand; on a shared machine label the figures "measured under load".
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pycolmap
import torch

from posfeat.io import FeatureReader, FeatureWriter
from posfeat.sfm import colmap, matching, verification

V11 = {"db_images": 6697, "queries": 1015}


def synthetic_set(n_db: int, n_q: int, keypoints: int, seed: int = 0, width: int = 1024, height: int = 768):
    """Cameras (K, R, t), keypoints, descriptors and visible point ids of a synthetic street scene."""
    rng = np.random.default_rng(seed)
    length = 1.5 * (n_db + n_q)  # cameras 1.5 m apart along x
    n_pts = int(keypoints * (n_db + n_q) / 6)
    X = np.stack([rng.uniform(-20, length + 20, n_pts), rng.uniform(-8, 8, n_pts), rng.uniform(15, 40, n_pts)], 1)
    desc_pts = rng.normal(size=(n_pts, 128)).astype(np.float32)
    f = 0.9 * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    cams = []
    for i in range(n_db + n_q):
        c = np.array([1.5 * i + rng.normal(0, 0.3), rng.normal(0, 0.3), 0.0])
        yaw = np.deg2rad(rng.normal(0, 10))
        R = np.array([[np.cos(yaw), 0, -np.sin(yaw)], [0, 1, 0], [np.sin(yaw), 0, np.cos(yaw)]])
        t = -R @ c
        x = (K @ (R @ X.T + t[:, None])).T
        z = x[:, 2]
        uv = x[:, :2] / z[:, None]
        vis = np.nonzero(
            (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] < height - 1)
        )[0]
        n_in = min(len(vis), int(0.6 * keypoints))
        vis = rng.choice(vis, n_in, replace=False) if n_in else vis[:0]
        kp = np.concatenate(
            [
                uv[vis] + rng.normal(0, 0.5, (n_in, 2)),
                rng.uniform([0, 0], [width - 1, height - 1], (keypoints - n_in, 2)),
            ]
        )
        d = np.concatenate(
            [desc_pts[vis] + rng.normal(0, 0.35, (n_in, 128)), rng.normal(size=(keypoints - n_in, 128))]
        ).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pid = np.concatenate([vis, -np.ones(keypoints - n_in, np.int64)])
        cams.append(
            {
                "name": (f"db/{i:05d}.jpg" if i < n_db else f"query/{i:05d}.jpg"),
                "K": K,
                "R": R,
                "t": t,
                "kp": kp.astype(np.float32),
                "desc": d,
                "pid": pid,
                "center": c,
            }
        )
    return cams, X, (width, height)


def make_pairs(cams, n_db: int, db_neighbors: int, query_neighbors: int):
    centers = np.stack([c["center"] for c in cams])
    db_c = centers[:n_db]
    db_pairs, q_pairs = set(), []
    for i in range(n_db):  # nearest db images along the street: a sorted window, O(n_db · k)
        lo, hi = max(0, i - db_neighbors), min(n_db, i + db_neighbors + 1)
        near = sorted(range(lo, hi), key=lambda j: np.linalg.norm(db_c[j] - db_c[i]))[1 : db_neighbors + 1]
        db_pairs.update((min(i, j), max(i, j)) for j in near)
    for q in range(n_db, len(cams)):
        d = np.linalg.norm(db_c - centers[q], axis=1)
        q_pairs += [(q, int(j)) for j in np.argsort(d)[:query_neighbors]]
    return sorted(db_pairs), q_pairs


def run_size(n_db: int, n_q: int, a, work: Path, devices: list[str]) -> dict:
    cams, X, (w, h) = synthetic_set(n_db, n_q, a.keypoints, a.seed)
    db_pairs, q_pairs = make_pairs(cams, n_db, a.db_neighbors, a.query_neighbors)
    feats = work / f"f{n_db}.h5"
    with FeatureWriter(feats) as fw:
        for c in cams:
            fw.add(c["name"], c["kp"], np.ones(len(c["kp"])), c["desc"], (w, h))
    out: dict = {"db_images": n_db, "queries": n_q, "db_pairs": len(db_pairs), "query_pairs": len(q_pairs)}
    names = [c["name"] for c in cams]
    pairs = [(names[i], names[j]) for i, j in db_pairs + q_pairs]
    for dev in devices:
        db_path = work / f"db{n_db}_{dev}.db"
        t0 = time.perf_counter()
        db = colmap.create_database(db_path)
        ids = {}
        for c in cams:
            cam = colmap.camera_from_K(c["K"], w, h)
            ids[c["name"]] = colmap.add_image(db, c["name"], colmap.add_camera(db, cam))
            colmap.import_keypoints(db, ids[c["name"]], c["kp"])
        t_import = time.perf_counter() - t0
        with FeatureReader(feats) as fr:
            t0 = time.perf_counter()
            ms = matching.match_and_import(db, fr, {n: n for n in names}, ids, pairs, device=dev, progress=False)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            t_match = time.perf_counter() - t0
        db.close()
        out[f"import_s_per_1000_images[{dev}]"] = round(1000 * t_import / len(cams), 3)
        out[f"matching_s_per_1000_pairs[{dev}]"] = round(1000 * t_match / len(pairs), 3)
        out[f"matches_per_pair[{dev}]"] = round(ms.num_matches / max(1, ms.num_pairs), 1)
    # verification and localization do not depend on the matching device: once, on the last database
    pl = work / f"pairs{n_db}.txt"
    colmap.write_pairs_file(pl, ms.matched_pairs)
    t0 = time.perf_counter()
    with colmap.colmap_log_level(False):
        verification.verify_pairs(db_path, pl, verification.two_view_geometry_options(seed=a.seed))
    t_ver = time.perf_counter() - t0
    db = pycolmap.Database.open(str(db_path))
    vs = verification.verification_stats(db)
    db.close()
    out["verification_s_per_1000_pairs"] = round(1000 * t_ver / max(1, len(ms.matched_pairs)), 3)
    out["inliers_per_verified_pair"] = round(vs.num_inlier_matches / max(1, vs.num_inlier_pairs), 1)
    # localization: 2D-3D from the ground-truth point ids of the query's keypoints matched to its db images
    t_loc, n_loc = 0.0, 0
    for q in range(n_db, len(cams)):
        c = cams[q]
        keep = c["pid"] >= 0
        xy = colmap.to_colmap_keypoints(c["kp"][keep])
        Xq = X[c["pid"][keep]]
        bad = np.random.default_rng(q).random(len(xy)) < 0.5  # half outliers
        Xq = Xq.copy()
        Xq[bad] += np.random.default_rng(q).normal(0, 5, (int(bad.sum()), 3))
        cam = colmap.camera_from_K(c["K"], w, h)
        t0 = time.perf_counter()
        est = pycolmap.AbsolutePoseEstimationOptions()
        est.ransac.max_error = 12.0
        pycolmap.estimate_and_refine_absolute_pose(xy.astype(np.float64), Xq.astype(np.float64), cam, est)
        t_loc += time.perf_counter() - t0
        n_loc += 1
    out["localization_s_per_1000_queries"] = round(1000 * t_loc / max(1, n_loc), 3)
    return out


def count_pairs(path: Path) -> tuple[int, int]:
    db = q = 0
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        if f[0].startswith("db/") and f[1].startswith("db/"):
            db += 1
        else:
            q += 1
    return db, q


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--db-images", type=int, nargs="+", default=[40, 80], help="db sizes to time (scaling check)")
    ap.add_argument("--queries", type=int, default=10, help="queries per size")
    ap.add_argument("--keypoints", type=int, default=4096, help="keypoints per image")
    ap.add_argument("--db-neighbors", type=int, default=20, help="db-db pairs: neighbours per db image")
    ap.add_argument("--query-neighbors", type=int, default=50, help="query-db pairs per query")
    ap.add_argument("--pairs-file", type=Path, help="the release's pair list, to count its db-db and query pairs")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    res = {"keypoints": a.keypoints, "threads": os.environ.get("OMP_NUM_THREADS"), "devices": devices, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.db_images:
            r = run_size(n, a.queries, a, Path(tmp), devices)
            print(json.dumps(r), flush=True)
            res["sizes"].append(r)
    last = res["sizes"][-1]
    if a.pairs_file:
        n_db_pairs, n_q_pairs = count_pairs(a.pairs_file)
        source = str(a.pairs_file)
    else:  # same structure as the synthetic set: db_neighbors per db image (about half are duplicates), queries
        n_db_pairs = int(round(V11["db_images"] * last["db_pairs"] / last["db_images"]))
        n_q_pairs = V11["queries"] * a.query_neighbors
        source = (
            f"assumed: {a.db_neighbors} neighbours per db image de-duplicated ({n_db_pairs}), "
            f"{a.query_neighbors} per query ({n_q_pairs}); pass --pairs-file for the release's list"
        )
    n_pairs = n_db_pairs + n_q_pairs
    est = {"pairs": n_pairs, "pairs_source": source}
    for dev in devices:
        h = (
            last[f"import_s_per_1000_images[{dev}]"] * (V11["db_images"] + V11["queries"]) / 1000
            + last[f"matching_s_per_1000_pairs[{dev}]"] * n_pairs / 1000
            + last["verification_s_per_1000_pairs"] * n_pairs / 1000
            + last["localization_s_per_1000_queries"] * V11["queries"] / 1000
        ) / 3600
        est[f"hours[{dev} matching]"] = round(h, 2)
    res["aachen_v1_1_estimate"] = est
    print(json.dumps(est, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
