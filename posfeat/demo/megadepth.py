"""The demo's MegaDepth writer, the mirror of :mod:`posfeat.datasets.megadepth`: training scenes in the CAPS
layout ``<scene_id>/dense0/aligned/{images/*.jpg, img_cam.txt, pairs.txt}``. Some scene ids are
IMC-banned ids, and one scene in four has cameras all around it, so some overlapping pairs have a relative
rotation above 80°."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from posfeat.datasets.camera import Camera
from posfeat.datasets.megadepth import write_img_cam
from posfeat.datasets.records import write_pair_list
from posfeat.demo.files import write_image
from posfeat.demo.photometry import stylize
from posfeat.demo.textures import photo_pool
from posfeat.demo.world import build_world, covisibility_matrix, item_rng, orbit_camera, render_checked

#: MegaDepth scene ids in order of use; every other one is an IMC-banned id.
MEGADEPTH_SCENE_IDS: tuple[str, ...] = (
    "0008",
    "0015",
    "0021",
    "0036",
    "0063",
    "0117",
    "0204",
    "0348",
    "0024",
    "0377",
    "1589",
    "0402",
)


def _pairs_by_covisibility(
    cams: list[Camera], depths: list[np.ndarray], thr: float
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Co-visibility matrix (row: fraction of image i seen in image j) and the pairs with both directions ≥ thr."""
    n = len(cams)
    cov = covisibility_matrix(cams, depths)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if min(cov[i, j], cov[j, i]) >= thr]
    return cov, pairs


def megadepth_scene_ids(n: int) -> list[str]:
    """``n`` 4-digit scene ids; the list interleaves IMC-banned ids (0008, 0021, 0063, 0024, 1589)."""
    ids = list(MEGADEPTH_SCENE_IDS[:n])
    k = 0
    while len(ids) < n:
        cand = f"{2000 + k:04d}"
        k += 1
        if cand not in ids:
            ids.append(cand)
    return ids


def write_megadepth_scene(
    root: Path,
    seed: int,
    k: int,
    n_images: int,
    size=(640, 480),
    min_covisibility: float = 0.1,
    jpeg_quality: int = 92,
) -> tuple[str, dict]:
    """Scene ``k`` of the MegaDepth (CAPS) layout → ``(scene_id, summary)``.

    Scene ``k`` with ``k % 4 == 1`` has cameras all around the cluster (pairs above 80° exist).
    """
    scene_id = megadepth_scene_ids(k + 1)[k]
    rng = item_rng(seed, "megadepth", k)
    world = build_world(rng, photo_pool("train"), texture_scale=size[0] / 640.0)
    spread = 2 * np.pi if k % 4 == 1 else np.radians(rng.uniform(60, 110))
    az0 = rng.uniform(0, 2 * np.pi)
    cams, depths = [], []
    out = root / scene_id / "dense0" / "aligned"
    named = []
    for i in range(n_images):
        if spread >= 2 * np.pi - 1e-9:
            az = az0 + 2 * np.pi * i / n_images + rng.normal(0, 0.1)
        else:
            az = az0 + rng.uniform(-spread / 2, spread / 2)
        height = rng.uniform(4.0, 9.0) if rng.random() < 0.2 else rng.uniform(1.3, 3.0)
        cam = orbit_camera(rng, world, az, rng.uniform(7.0, 17.0), height, size)
        name = f"{i:04d}.jpg"
        image, inv_depth = render_checked(world, cam, f"megadepth/{scene_id}/{name}")
        write_image(out / "images" / name, stylize(image, rng, "day"), jpeg_quality)
        named.append((name, cam))
        cams.append(cam)
        depths.append(inv_depth)
    cov, pairs = _pairs_by_covisibility(cams, depths, min_covisibility)
    write_img_cam(out / "img_cam.txt", named)
    write_pair_list(out / "pairs.txt", ((f"{i:04d}.jpg", f"{j:04d}.jpg") for i, j in pairs))
    rot = [np.degrees(np.arccos(np.clip((np.trace(cams[j].R @ cams[i].R.T) - 1) / 2, -1, 1))) for i, j in pairs]
    return scene_id, {"images": n_images, "pairs": len(pairs), "pairs_over_80deg": int(np.sum(np.array(rot) > 80))}


def write_megadepth(
    root: Path,
    seed: int,
    n_scenes: int,
    n_images: int,
    size=(640, 480),
    min_covisibility: float = 0.1,
    jpeg_quality: int = 92,
) -> dict:
    """MegaDepth (CAPS) layout: ``n_scenes`` scenes of :func:`write_megadepth_scene`, one after the other."""
    scenes = {}
    for k in tqdm(range(n_scenes), desc="demo megadepth", leave=False):
        scene_id, info = write_megadepth_scene(root, seed, k, n_images, size, min_covisibility, jpeg_quality)
        scenes[scene_id] = info
    return {"scenes": scenes}
