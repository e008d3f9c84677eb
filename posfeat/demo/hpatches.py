"""The demo's HPatches writer, the mirror of :mod:`posfeat.datasets.hpatches`: sequences ``<i_|v_name>/{1..6}.ppm``
and ``H_1_k``. ``i_*``: one view of an evaluation world under six photometric conditions (identity
homographies); ``v_*``: one textured plane seen by six cameras (exact plane-induced homographies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from posfeat.datasets.camera import Camera
from posfeat.demo.files import write_image
from posfeat.demo.photometry import stylize
from posfeat.demo.render import Plane, intrinsics, look_at, plane_homography, rect_plane, render
from posfeat.demo.textures import make_texture, photo_pool
from posfeat.demo.world import build_world, item_rng, orbit_camera, render_checked


def _write_h(path: Path, H: np.ndarray) -> None:
    """Write a homography as HPatches' 3×3 text, normalised to ``H[2, 2] = 1``."""
    H = H / H[2, 2]
    path.write_text("".join(" ".join(f"{v:.10g}" for v in row) + "\n" for row in H))


def _hpatches_v_cameras(rng, plane: Plane, size, max_tries: int = 200) -> list[Camera]:
    """Six cameras seeing only ``plane`` (every pixel on it): a near-frontal reference, then growing
    viewpoint angle (up to ~50°), scale change and in-plane rotation."""
    W, H = size
    n = plane.normal  # the plane is seen unmirrored from -n
    centre = plane.corners().mean(0)
    ex = plane.axis_u / np.linalg.norm(plane.axis_u)
    ey = plane.axis_v / np.linalg.norm(plane.axis_v)
    tilt_dir = rng.uniform(0, 2 * np.pi)
    cams = []
    for k in range(6):
        for attempt in range(max_tries):
            shrink = 1.0 - attempt / max_tries
            angle = np.radians(5.0 if k == 0 else (8.0 + 8.5 * k) * shrink * rng.uniform(0.85, 1.1))
            direction = tilt_dir + (rng.normal(0, 0.3) if k else rng.uniform(0, 2 * np.pi))
            axis = np.cos(direction) * ex + np.sin(direction) * ey
            view = -n * np.cos(angle) + axis * np.sin(angle)
            dist = rng.uniform(2.2, 3.2) * (rng.uniform(0.75, 1.3) if k else 1.0)
            target = centre + rng.normal(0, 0.15, 3) * (ex + ey)
            roll = rng.normal(0, 4.0) + (
                rng.choice([-1, 1]) * rng.uniform(0, 25) * (k / 5) if rng.random() < 0.4 else 0.0
            )
            R, t = look_at(target + dist * view, target, roll, up=-ey)
            K = intrinsics(rng.uniform(0.8, 1.0) * W, W, H)
            cam = Camera(name="", width=W, height=H, K=K, R=R, t=t)
            _, inv_depth, ids = render([plane], cam, max_levels=1)
            if (ids == 0).all():
                cams.append(cam)
                break
        else:
            raise RuntimeError("could not place an HPatches camera that sees only the plane")
    return cams


def write_hpatches_i(root: Path, seed: int, s: int, size=(480, 352)) -> str:
    """Illumination sequence ``i_demo<s>``: one view of an evaluation world under six photometric conditions."""
    W, _ = size
    rng = item_rng(seed, "hpatches_i", s)
    world = build_world(rng, photo_pool("eval"), n_buildings=(3, 4), texture_scale=W / 640.0)
    cam = orbit_camera(rng, world, rng.uniform(0, 2 * np.pi), rng.uniform(4.0, 9.0), rng.uniform(1.0, 3.0), size)
    image, _ = render_checked(world, cam, f"hpatches/i_demo{s:02d}")
    name = f"i_demo{s:02d}"
    d = root / name
    d.mkdir(parents=True)
    n_night = int(rng.integers(0, 3))
    styles = ["day"] + ["strong"] * (5 - n_night) + ["night"] * n_night
    for k, style in enumerate(styles, start=1):
        write_image(d / f"{k}.ppm", stylize(image, rng, style), 0)
        if k > 1:
            _write_h(d / f"H_1_{k}", np.eye(3))
    return name


def write_hpatches_v(root: Path, seed: int, s: int, size=(480, 352)) -> str:
    """Viewpoint sequence ``v_demo<s>``: one textured plane seen by six cameras, exact ``H_1_k``."""
    W, _ = size
    rng = item_rng(seed, "hpatches_v", s)
    ts = W / 480.0  # texture resolution follows the image size (small sequences for tests are fast)
    tex, _ = make_texture(rng, int(round(1200 * ts)), int(round(1600 * ts)), photo_pool("eval"), photo_density=1.3)
    plane = rect_plane(np.zeros(3), (1, 0, 0), (0, -1, 0), 8.0, 6.0, tex, two_sided=False, name="v_plane")
    # normal = u x v = (1,0,0)x(0,-1,0) = -z: seen unmirrored from +z
    cams = _hpatches_v_cameras(rng, plane, size)
    name = f"v_demo{s:02d}"
    d = root / name
    d.mkdir(parents=True)
    H1 = plane_homography(plane, cams[0])
    for k, cam in enumerate(cams, start=1):
        image, _, _ = render([plane], cam)
        write_image(d / f"{k}.ppm", stylize(image, rng, "day"), 0)
        if k > 1:
            _write_h(d / f"H_1_{k}", plane_homography(plane, cam) @ np.linalg.inv(H1))
    return name


def write_hpatches(root: Path, seed: int, n_sequences: int, size=(480, 352)) -> dict:
    """``n_sequences`` ``i_*`` and ``n_sequences`` ``v_*`` sequences (6 PPM images and 5 ``H_1_k`` each)."""
    return {
        "i": [
            write_hpatches_i(root, seed, s, size)
            for s in tqdm(range(n_sequences), desc="demo hpatches i_", leave=False)
        ],
        "v": [
            write_hpatches_v(root, seed, s, size)
            for s in tqdm(range(n_sequences), desc="demo hpatches v_", leave=False)
        ],
    }
