"""The demo's ETH writer, the mirror of :mod:`posfeat.datasets.eth`: ``<Scene>/images/*.jpg`` and
``gt_cameras.txt`` (the ``img_cam.txt`` line format), cameras on a 150° arc around the cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from posfeat.datasets.megadepth import write_img_cam
from posfeat.demo.files import write_image
from posfeat.demo.photometry import stylize
from posfeat.demo.textures import photo_pool
from posfeat.demo.world import build_world, item_rng, orbit_camera, render_checked

ETH_SCENE_NAMES: tuple[str, ...] = ("Plaza", "Courtyard", "Market", "Harbour", "Station", "Garden")


def eth_scene_name(k: int) -> str:
    """Name of ETH scene ``k``."""
    return ETH_SCENE_NAMES[k] if k < len(ETH_SCENE_NAMES) else f"Scene{k:02d}"


def write_eth_scene(
    root: Path, seed: int, k: int, n_images: int, size=(640, 480), jpeg_quality: int = 92
) -> tuple[str, int]:
    """ETH scene ``k``: ``<Scene>/images/*.jpg`` + ``gt_cameras.txt``; cameras on a 150° arc around the cluster."""
    rng = item_rng(seed, "eth", k)
    scene = eth_scene_name(k)
    world = build_world(rng, photo_pool("eval"), n_objects=(5, 7), texture_scale=size[0] / 640.0)
    az0, spread = rng.uniform(0, 2 * np.pi), np.radians(150)
    named = []
    for i in range(n_images):
        az = az0 + spread * (i / max(n_images - 1, 1) - 0.5) + rng.normal(0, 0.03)
        cam = orbit_camera(
            rng,
            world,
            az,
            rng.uniform(7.0, 10.0),
            rng.uniform(1.5, 4.0),
            size,
            f_range=(0.8, 1.0),
            roll_std=3.0,
            target_jitter=1.0,
        )
        name = f"{i:04d}.jpg"
        image, _ = render_checked(world, cam, f"eth/{scene}/{name}")
        write_image(root / scene / "images" / name, stylize(image, rng, "day"), jpeg_quality)
        named.append((name, cam))
    write_img_cam(root / scene / "gt_cameras.txt", named)
    return scene, n_images


def write_eth(root: Path, seed: int, n_scenes: int, n_images: int, size=(640, 480), jpeg_quality: int = 92) -> dict:
    """ETH layout: ``n_scenes`` scenes of :func:`write_eth_scene`."""
    return dict(
        write_eth_scene(root, seed, k, n_images, size, jpeg_quality)
        for k in tqdm(range(n_scenes), desc="demo eth", leave=False)
    )
