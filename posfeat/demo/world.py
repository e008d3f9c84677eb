"""World building, lighting and cameras of the demo world: per-item random streams, a plaza of textured
planes (ground, walls, sky, buildings, a cluster of boxes) lit by one sun, cameras orbiting the cluster, and
the depth-tested rendering every writer uses.

World frame: metres, z up, ground at z = 0, the object cluster around the origin. Poses are world→camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posfeat.datasets.camera import Camera
from posfeat.demo.render import Plane, covisibility, intrinsics, look_at, rect_plane, render
from posfeat.demo.textures import make_texture, sky_texture

DATASET_CODES = {"megadepth": 1, "hpatches_i": 2, "hpatches_v": 3, "eth": 4, "aachen": 5}


def item_rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    """Independent random stream per (seed, dataset, item): changing one count never changes another item."""
    return np.random.default_rng([int(seed), DATASET_CODES[dataset], int(index)])


@dataclass
class World:
    """Planes plus what cameras need to frame the scene: the object cluster's centre and radius."""

    planes: list[Plane]
    center: np.ndarray
    cluster_radius: float
    sources: set[str] = field(default_factory=set)


def _face(
    center, normal, size_w: float, size_h: float, texture: np.ndarray, name: str, two_sided=False, sources=()
) -> Plane:
    """A rectangle facing ``normal`` (toward the viewer), texture upright and unmirrored for that viewer."""
    n = np.asarray(normal, float)
    n /= np.linalg.norm(n)
    ez = np.array([0.0, 0.0, 1.0])
    if abs(n[2]) > 0.9:
        u, v = np.array([1.0, 0.0, 0.0]), np.array([0.0, -np.sign(n[2]), 0.0])
    else:
        u = np.cross(ez, n)
        u /= np.linalg.norm(u)
        v = -ez
    return rect_plane(
        np.asarray(center, float), u, v, size_w, size_h, texture, two_sided=two_sided, name=name, sources=tuple(sources)
    )


def _tex_size(size_m: float, ppm: float, max_px: int = 2048) -> int:
    """Texture side in pixels for ``size_m`` metres at ``ppm`` pixels per metre (32 to ``max_px``)."""
    return int(np.clip(round(size_m * ppm), 32, max_px))


def _box_faces(
    rng,
    photos,
    center_xy,
    size,
    yaw: float,
    ppm: float,
    name: str,
    top: bool = True,
) -> list[Plane]:
    """The 4 side faces (and the top) of a box standing on the ground, outward-facing, single-sided."""
    sx, sy, sz = size
    c, s = np.cos(yaw), np.sin(yaw)
    ex, ey, ez = np.array([c, s, 0.0]), np.array([-s, c, 0.0]), np.array([0.0, 0.0, 1.0])
    base = np.array([center_xy[0], center_xy[1], 0.0])
    faces = []
    for k, (n, half, width) in enumerate([(ex, sx / 2, sy), (-ex, sx / 2, sy), (ey, sy / 2, sx), (-ey, sy / 2, sx)]):
        tex, src = make_texture(rng, _tex_size(sz, ppm), _tex_size(width, ppm), photos)
        faces.append(_face(base + n * half + ez * sz / 2, n, width, sz, tex, f"{name}_side{k}", sources=src))
    if top:
        tex, src = make_texture(rng, _tex_size(sy, ppm), _tex_size(sx, ppm), photos)
        top_face = rect_plane(base + ez * sz, ex, -ey, sx, sy, tex, two_sided=False, name=f"{name}_top", sources=src)
        faces.append(top_face)
    return faces


def _plaza(rng: np.random.Generator, photos, L: float, height: float, texture_scale: float) -> list[Plane]:
    """The ground (3×3 tiles, the central one at a higher resolution), the four inward-facing walls and the sky."""
    planes: list[Plane] = []
    tile = 2 * L / 3
    for i in range(3):
        for j in range(3):
            ppm = (48.0 if (i, j) == (1, 1) else 14.0) * texture_scale
            n_px = _tex_size(tile, ppm, max_px=1536)
            tex, src = make_texture(rng, n_px, n_px, photos)
            cx, cy = -L + tile * (i + 0.5), -L + tile * (j + 0.5)
            planes.append(_face((cx, cy, 0.0), (0, 0, 1), tile, tile, tex, f"ground{i}{j}", sources=src))
    for k, (n, p) in enumerate(
        [((1, 0, 0), (-L, 0)), ((-1, 0, 0), (L, 0)), ((0, 1, 0), (0, -L)), ((0, -1, 0), (0, L))]
    ):
        tex, src = make_texture(
            rng, _tex_size(height, 12.0 * texture_scale), _tex_size(2 * L, 12.0 * texture_scale), photos
        )
        planes.append(_face((p[0], p[1], height / 2), n, 2 * L, height, tex, f"wall{k}", sources=src))
    planes.append(_face((0, 0, height), (0, 0, -1), 2 * L, 2 * L, sky_texture(rng, 256, 256), "sky"))
    return planes


def _buildings(rng: np.random.Generator, photos, n_buildings: tuple[int, int], texture_scale: float) -> list[Plane]:
    """Buildings around the plaza, 20 m or more from the origin, facing the centre."""
    planes: list[Plane] = []
    nb = int(rng.integers(n_buildings[0], n_buildings[1] + 1))
    angles = rng.permutation(4)[:nb] * (np.pi / 2) + rng.uniform(-0.25, 0.25, size=nb) + rng.uniform(0, 2 * np.pi)
    for b, ang in enumerate(angles):
        w, d, h = rng.uniform(10, 20), rng.uniform(6, 10), rng.uniform(8, 16)
        r = 20.0 + d / 2
        planes += _box_faces(
            rng,
            photos,
            (r * np.cos(ang), r * np.sin(ang)),
            (d, w, h),
            ang,
            28.0 * texture_scale,
            f"building{b}",
        )
    return planes


def _objects(rng: np.random.Generator, photos, n_objects: tuple[int, int], texture_scale: float) -> list[Plane]:
    """The cluster of boxes within 4 m of the origin."""
    planes: list[Plane] = []
    no = int(rng.integers(n_objects[0], n_objects[1] + 1))
    for o in range(no):
        rad, ang = rng.uniform(0, 4.0), rng.uniform(0, 2 * np.pi)
        size = (rng.uniform(0.8, 3.0), rng.uniform(0.8, 3.0), rng.uniform(0.8, 3.5))
        planes += _box_faces(
            rng,
            photos,
            (rad * np.cos(ang), rad * np.sin(ang)),
            size,
            rng.uniform(0, np.pi),
            90.0 * texture_scale,
            f"box{o}",
        )
    return planes


def build_world(
    rng: np.random.Generator,
    photos,
    n_objects: tuple[int, int] = (3, 6),
    n_buildings: tuple[int, int] = (2, 4),
    half_size: float = 45.0,
    height: float = 30.0,
    texture_scale: float = 1.0,
) -> World:
    """A plaza: textured ground, enclosing walls and sky (every ray hits something), buildings, boxes.

    World frame: metres, z up, ground at z = 0, the object cluster around the origin (radius ~5 m).
    Buildings stand 20 m or more from the origin, so cameras within 18 m of it never sit inside one.
    ``texture_scale`` scales every texture's resolution (pixels per metre); 1.0 suits 640-pixel-wide images,
    and the writers pass ``image width / 640`` so that small worlds (tests) are fast to build.
    """
    planes = _plaza(rng, photos, half_size, height, texture_scale)
    planes += _buildings(rng, photos, n_buildings, texture_scale)
    planes += _objects(rng, photos, n_objects, texture_scale)
    sources = set().union(*[set(p.sources) for p in planes])
    return World(planes, np.array([0.0, 0.0, 1.0]), 5.0, sources)


def orbit_camera(
    rng: np.random.Generator,
    world: World,
    azimuth: float,
    radius: float,
    height: float,
    size: tuple[int, int],
    f_range=(0.7, 1.05),
    roll_std: float = 5.0,
    target_jitter: float = 2.5,
) -> Camera:
    """A camera at ``(radius, azimuth, height)`` around the cluster, looking at a jittered cluster point."""
    W, H = size
    C = world.center[:2] + radius * np.array([np.cos(azimuth), np.sin(azimuth)])
    C = np.array([C[0], C[1], height])
    target = world.center + np.array([*rng.normal(0, target_jitter, 2), rng.uniform(-0.8, 1.5)])
    roll = float(np.clip(rng.normal(0, roll_std), -3 * roll_std, 3 * roll_std))
    R, t = look_at(C, target, roll)
    K = intrinsics(rng.uniform(*f_range) * W, W, H, *rng.normal(0, 2.0, 2))
    return Camera(name="", width=W, height=H, K=K, R=R, t=t)


def render_checked(world: World, cam: Camera, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Render ``cam``'s view → ``(image, inverse depth)``; an error naming ``what`` if a pixel is left empty."""
    image, inv_depth, _ = render(world.planes, cam)
    if not (inv_depth > 0).all():
        raise RuntimeError(f"demo renderer left {int((inv_depth <= 0).sum())} pixels empty in {what}")
    return image, inv_depth


def covisibility_matrix(cams: list[Camera], depths: list[np.ndarray]) -> np.ndarray:
    """``cov[i, j]``: the fraction of image ``i`` seen (unoccluded) in image ``j`` (0 on the diagonal)."""
    n = len(cams)
    cov = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                cov[i, j] = covisibility(cams[i], depths[i], cams[j], depths[j])
    return cov
