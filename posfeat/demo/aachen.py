"""The demo's Aachen Day-Night v1.1 writer, the mirror of :mod:`posfeat.datasets.aachen`: database and query
images under ``images/images_upright``, the reference model ``3D-models/aachen_v_1_1`` (with
``database_intrinsics_v1_1.txt``), the query lists, ``others/image_pairs_to_match_v1_1.txt``, and the
ground-truth query poses ``queries/ground_truth_queries.txt`` that the real release withholds.

These are COLMAP files, and COLMAP puts the centre of the top-left pixel at ``(0.5, 0.5)``: their principal
points are ours + 0.5, exactly as a feature importer that adds 0.5 to our keypoints expects."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posfeat.datasets.camera import Camera, rotmat_to_qvec
from posfeat.datasets.records import fmt_number
from posfeat.demo.files import write_image
from posfeat.demo.photometry import stylize
from posfeat.demo.render import backproject, covisibility, intrinsics, look_at, visible_in
from posfeat.demo.textures import photo_pool
from posfeat.demo.world import build_world, covisibility_matrix, item_rng, orbit_camera, render_checked


def _colmap_params(cam: Camera) -> list[float]:
    """SIMPLE_RADIAL ``f cx cy k`` in COLMAP's pixel convention (principal point + 0.5), ``k = 0``."""
    return [float(cam.K[0, 0]), float(cam.K[0, 2]) + 0.5, float(cam.K[1, 2]) + 0.5, 0.0]


def _intrinsics_line(name: str, cam: Camera) -> str:
    """One query-list / intrinsics line: ``name SIMPLE_RADIAL w h f cx cy k`` (COLMAP pixel convention)."""
    return f"{name} SIMPLE_RADIAL {cam.width} {cam.height} " + " ".join(fmt_number(v) for v in _colmap_params(cam))


def _write_aachen_model(
    path: Path,
    names: list[str],
    cams: list[Camera],
    depths: list[np.ndarray],
    rng: np.random.Generator,
    points_per_image: int = 60,
) -> int:
    """The reference model with pycolmap: cameras, posed images and ground-truth 3D points with tracks.

    Points are surface points sampled in each db image and observed (unoccluded) in at least two db images;
    observations are their exact projections (COLMAP pixel convention). Returns the number of 3D points.
    """
    import pycolmap

    n = len(cams)
    obs: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    tracks: list[tuple[np.ndarray, list[tuple[int, int]]]] = []
    for i in range(n):
        H, W = depths[i].shape
        # integer pixel centres: the z-buffer holds the exact inverse depth there, so X lies on the surface
        xy = np.stack([rng.integers(4, W - 4, points_per_image), rng.integers(4, H - 4, points_per_image)], 1)
        X = backproject(cams[i], xy.astype(float), depths[i][xy[:, 1], xy[:, 0]])
        seen = np.zeros((n, len(X)), bool)
        proj = np.zeros((n, len(X), 2))
        for j in range(n):
            seen[j], proj[j] = visible_in(cams[j], depths[j], X)
        for p in np.flatnonzero(seen.sum(0) >= 2):
            track = []
            for j in np.flatnonzero(seen[:, p]):
                obs[j].append((proj[j, p, 0] + 0.5, proj[j, p, 1] + 0.5))
                track.append((int(j), len(obs[j]) - 1))
            tracks.append((X[p], track))
    rec = pycolmap.Reconstruction()
    for i, (name, cam) in enumerate(zip(names, cams)):
        camera = pycolmap.Camera(
            model="SIMPLE_RADIAL", width=cam.width, height=cam.height, params=_colmap_params(cam), camera_id=i + 1
        )
        rec.add_camera_with_trivial_rig(camera)
        kps = np.array(obs[i], float).reshape(-1, 2)
        image = pycolmap.Image(name=name, keypoints=kps, camera_id=i + 1, image_id=i + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(np.hstack([cam.R, cam.t.reshape(3, 1)])))
    for X, track in tracks:
        tr = pycolmap.Track()
        for j, idx in track:
            tr.add_element(j + 1, idx)
        rec.add_point3D(np.asarray(X, float), tr, np.array([128, 128, 128], np.uint8))
    path.mkdir(parents=True, exist_ok=True)
    rec.write_binary(str(path))
    for extra in ("rigs.bin", "frames.bin"):  # the release has only cameras/images/points3D; pycolmap reads that
        (path / extra).unlink(missing_ok=True)
    return len(tracks)


def write_aachen(
    root: Path,
    seed: int,
    n_db: int,
    n_day: int,
    n_night: int,
    size=(640, 480),
    jpeg_quality: int = 92,
    pairs_per_query: int = 10,
    db_neighbours: int = 5,
) -> dict:
    """Aachen Day-Night v1.1 layout with ground-truth query poses (``queries/ground_truth_queries.txt``)."""
    rng = item_rng(seed, "aachen", 0)
    world = build_world(rng, photo_pool("eval"), n_objects=(5, 7), n_buildings=(3, 4), texture_scale=size[0] / 640.0)
    up = root / "images" / "images_upright"
    db_names, db_cams, db_depths = _write_db_images(up, world, rng, n_db, size, jpeg_quality)
    queries = _write_queries(up, world, rng, db_cams, n_day, n_night, size, jpeg_quality)
    pairs = _query_pairs(queries, db_names, db_cams, db_depths, pairs_per_query)
    pairs += _db_pairs(db_names, db_cams, db_depths, db_neighbours)
    model = root / "3D-models" / "aachen_v_1_1"
    n_points = _write_aachen_model(model, db_names, db_cams, db_depths, rng)
    (model / "database_intrinsics_v1_1.txt").write_text(
        "\n".join(_intrinsics_line(n, c) for n, c in zip(db_names, db_cams)) + "\n"
    )
    _write_query_lists(root / "queries", queries)
    (root / "others").mkdir(parents=True, exist_ok=True)
    (root / "others" / "image_pairs_to_match_v1_1.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    return {
        "db_images": n_db,
        "day_queries": n_day,
        "night_queries": n_night,
        "pairs": len(pairs),
        "points3D": n_points,
    }


def _write_db_images(up: Path, world, rng: np.random.Generator, n_db: int, size, jpeg_quality: int):
    """Database images ``db/<1000+i>.jpg`` on a ring around the cluster → ``(names, cameras, inverse depths)``."""
    db_names, db_cams, db_depths = [], [], []
    az0 = rng.uniform(0, 2 * np.pi)
    for i in range(n_db):
        az = az0 + 2 * np.pi * i / n_db + rng.normal(0, 0.05)
        cam = orbit_camera(
            rng, world, az, rng.uniform(8.0, 15.0), rng.uniform(1.4, 4.0), size, f_range=(0.75, 1.0), roll_std=2.0
        )
        name = f"db/{1000 + i}.jpg"
        image, inv_depth = render_checked(world, cam, f"aachen/{name}")
        write_image(up / name, stylize(image, rng, "day"), jpeg_quality)
        db_names.append(name)
        db_cams.append(cam)
        db_depths.append(inv_depth)
    return db_names, db_cams, db_depths


def _write_queries(
    up: Path, world, rng: np.random.Generator, db_cams: list[Camera], n_day: int, n_night: int, size, jpeg_quality: int
) -> list[tuple[str, Camera, np.ndarray, bool]]:
    """Day then night query images near (not at) a database camera, with perturbed position and orientation
    → ``(name, camera, inverse depth, night)`` per query."""
    queries = []
    n_db = len(db_cams)
    order = rng.permutation(n_db)
    for q in range(n_day + n_night):
        night = q >= n_day
        ref = db_cams[int(order[q % n_db])]
        C = ref.center + np.array([*rng.normal(0, 1.5, 2), rng.normal(0, 0.3)])
        C[2] = max(C[2], 1.0)
        fwd = ref.R[2] + rng.normal(0, 0.12, 3)
        R, t = look_at(C, C + fwd, float(rng.normal(0, 3.0)))
        device = "nexus5x" if night or rng.random() < 0.5 else "milestone"
        K = intrinsics(rng.uniform(0.8, 1.0) * size[0], *size)
        cam = Camera(name="", width=size[0], height=size[1], K=K, R=R, t=t)
        name = f"query/{'night' if night else 'day'}/{device}/IMG_{'night' if night else 'day'}_{q:04d}.jpg"
        image, inv_depth = render_checked(world, cam, f"aachen/{name}")
        write_image(up / name, stylize(image, rng, "night" if night else "day"), jpeg_quality)
        queries.append((name, cam, inv_depth, night))
    return queries


def _query_pairs(
    queries, db_names: list[str], db_cams: list[Camera], db_depths: list[np.ndarray], pairs_per_query: int
) -> list[tuple[str, str]]:
    """Each query with its (up to) ``pairs_per_query`` most co-visible database images."""
    pairs: list[tuple[str, str]] = []
    for name, cam, inv_depth, _ in queries:
        cov = np.array([covisibility(cam, inv_depth, c, d) for c, d in zip(db_cams, db_depths)])
        for j in np.argsort(-cov, kind="stable")[:pairs_per_query]:
            if cov[j] > 0:
                pairs.append((name, db_names[j]))
    return pairs


def _db_pairs(
    db_names: list[str], db_cams: list[Camera], db_depths: list[np.ndarray], db_neighbours: int
) -> list[tuple[str, str]]:
    """Database pairs among each image's ``db_neighbours`` most co-visible ones (both ways above 5 %), once each."""
    n_db = len(db_names)
    cov_db = covisibility_matrix(db_cams, db_depths)
    sym = np.minimum(cov_db, cov_db.T)
    seen = set()
    pairs = []
    for i in range(n_db):
        for j in np.argsort(-sym[i], kind="stable")[:db_neighbours]:
            key = (min(i, int(j)), max(i, int(j)))
            if sym[i, j] > 0.05 and key not in seen:
                seen.add(key)
                pairs.append((db_names[key[0]], db_names[key[1]]))
    return pairs


def _write_query_lists(qdir: Path, queries) -> None:
    """The day and night query lists (with intrinsics) and the ground-truth poses ``name qw qx qy qz tx ty tz``."""
    qdir.mkdir(parents=True, exist_ok=True)
    (qdir / "day_time_queries_with_intrinsics.txt").write_text(
        "".join(_intrinsics_line(n, c) + "\n" for n, c, _, night in queries if not night)
    )
    (qdir / "night_time_queries_with_intrinsics_v1_1.txt").write_text(
        "".join(_intrinsics_line(n, c) + "\n" for n, c, _, night in queries if night)
    )
    gt = []
    for n, c, _, _ in queries:
        q = rotmat_to_qvec(c.R)
        gt.append(f"{n} " + " ".join(fmt_number(v) for v in [*q, *c.t]))
    (qdir / "ground_truth_queries.txt").write_text("\n".join(gt) + "\n")
