"""The demo world (DESIGN.md §4): a rendered, piecewise-planar world with exact ground truth.

:func:`generate_demo` writes four datasets in exactly the real datasets' on-disk formats (DESIGN.md §3):

* ``megadepth/<scene_id>/dense0/aligned/{images/*.jpg, img_cam.txt, pairs.txt}`` (CAPS layout; some scene
  ids are IMC-banned ids, and one scene in four has cameras all around it, so some overlapping pairs have a
  relative rotation above 80°);
* ``hpatches/<i_|v_name>/{1..6}.ppm, H_1_k`` (``i_*``: one view, photometric changes, identity homography;
  ``v_*``: one textured plane seen by six cameras, exact plane-induced homographies);
* ``aachen/`` in the Aachen Day-Night v1.1 layout, plus ``queries/ground_truth_queries.txt``;
* ``eth/<Scene>/images/*.jpg`` and ``gt_cameras.txt``.

Pixel conventions. Everything we write in our own text formats (``img_cam.txt``, ``gt_cameras.txt``, the
``H_1_k`` files) uses the project's convention: the centre of the top-left pixel is ``(0, 0)``. The Aachen
files are COLMAP files (``database_intrinsics_v1_1.txt``, the query lists and the reference model), and
COLMAP puts that centre at ``(0.5, 0.5)``: their principal points are ours + 0.5, exactly as a feature
importer that adds 0.5 to our keypoints expects. Poses are world→camera everywhere.

Texture split. Training scenes (MegaDepth) only use the photographs in :data:`TRAIN_PHOTOS`; evaluation
scenes (HPatches, Aachen, ETH) only use :data:`EVAL_PHOTOS`. Procedural layers (noise, shapes, text) are
drawn from per-scene random streams, so no two scenes share a texture either. Photo crops, glyphs and flat
shapes recur within a world, so every texture finally gets a unique fine grain (:func:`apply_grain`): without
it, SIFT's ratio test keeps many matches between different copies of one pattern.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import multiprocessing
import os
import string
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from posfeat.data.render import (
    Camera,
    Plane,
    covisibility,
    intrinsics,
    look_at,
    plane_homography,
    rect_plane,
    render,
    backproject,
    visible_in,
)
from posfeat.geometry import rotmat_to_qvec
from posfeat.io import DataError, atomic_path
from posfeat.utils import get_logger

logger = get_logger(__name__)

# ----------------------------------------------------------------------------------- texture pool
#: scikit-image sample photographs (shipped with the package, no download) used by TRAINING scenes.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "camera", "brick", "grass", "clock", "page", "hubble_deep_field",
    "grace_hopper", "jacksboro_fault_dem",
)
#: images that come with matplotlib (its sample data) rather than scikit-image; the DEM is hill-shaded.
MATPLOTLIB_PHOTOS = {"grace_hopper": "grace_hopper.jpg", "jacksboro_fault_dem": "jacksboro_fault_dem.npz"}
#: photographs used by EVALUATION scenes (HPatches, Aachen, ETH); disjoint from :data:`TRAIN_PHOTOS`.
EVAL_PHOTOS: tuple[str, ...] = (
    "rocket", "gravel", "coins", "text", "moon", "immunohistochemistry", "retina", "cell",
    "stereo_motorcycle", "logo",
)

#: MegaDepth scene ids in order of use; every other one is an IMC-banned id (DESIGN.md §3).
MEGADEPTH_SCENE_IDS: tuple[str, ...] = (
    "0008", "0015", "0021", "0036", "0063", "0117", "0204", "0348", "0024", "0377", "1589", "0402",
)
DEFAULT_SIZES: dict = {
    "megadepth_scenes": 8,
    "megadepth_images": 12,
    "hpatches_sequences": 8,
    "eth_scenes": 2,
    "eth_images": 12,
    "aachen_db_images": 24,
    "aachen_day_queries": 6,
    "aachen_night_queries": 4,
    "megadepth_size": (640, 480),
    "hpatches_size": (480, 352),
    "eth_size": (640, 480),
    "aachen_size": (640, 480),
    "min_covisibility": 0.1,
    "jpeg_quality": 92,
}
ETH_SCENE_NAMES: tuple[str, ...] = ("Plaza", "Courtyard", "Market", "Harbour", "Station", "Garden")

_DATASET_CODES = {"megadepth": 1, "hpatches_i": 2, "hpatches_v": 3, "eth": 4, "aachen": 5}


def _rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    """Independent random stream per (seed, dataset, item): changing one count never changes another item."""
    return np.random.default_rng([int(seed), _DATASET_CODES[dataset], int(index)])


def _to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:  # RGBA on white
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = (a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a[:, :, :3])


@functools.lru_cache(maxsize=2)
def photo_pool(split: str) -> tuple[tuple[str, np.ndarray], ...]:
    """The photographs of a split (``"train"`` or ``"eval"``) as ``(name, RGB uint8)`` tuples."""
    import skimage.data

    names = {"train": TRAIN_PHOTOS, "eval": EVAL_PHOTOS}[split]
    out = []
    for name in names:
        if name in MATPLOTLIB_PHOTOS:
            out.append((name, _matplotlib_photo(name)))
            continue
        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
            out.append((f"{name}_left", _to_rgb_uint8(img[0])))
            out.append((f"{name}_right", _to_rgb_uint8(img[1])))
        else:
            out.append((name, _to_rgb_uint8(img)))
    return tuple(out)


def _matplotlib_photo(name: str) -> np.ndarray:
    """One of matplotlib's sample images as RGB uint8; an elevation model is hill-shaded (rock, terrain)."""
    import matplotlib.cbook as cbook
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    path = cbook.get_sample_data(MATPLOTLIB_PHOTOS[name], asfileobj=False)
    if str(path).endswith(".npz"):
        z = np.load(path)["elevation"].astype(np.float64)
        rgb = LightSource(azdeg=315, altdeg=40).shade(z, cmap=colormaps["gist_earth"], vert_exag=0.05, blend_mode="soft")
        return _to_rgb_uint8(rgb[:, :, :3])
    return _to_rgb_uint8(cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


def value_noise(rng: np.random.Generator, h: int, w: int, cells: tuple[int, ...] = (3, 9, 27, 81)) -> np.ndarray:
    """Multi-octave colour value noise in ``[0, 1]``, ``(h, w, 3)`` float32."""
    out = np.zeros((h, w, 3), np.float32)
    total = 0.0
    for i, c in enumerate(cells):
        gh, gw = max(2, int(round(c * h / max(h, w)))), max(2, int(round(c * w / max(h, w))))
        grid = rng.random((gh, gw, 3), dtype=np.float32)
        amp = 0.6**i
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _paste_photo(canvas: np.ndarray, rng: np.random.Generator, photo: np.ndarray, size: int) -> None:
    """Paste a random crop of ``photo`` (random scale, rotation, flip, tint) with hard edges onto ``canvas``."""
    H, W = canvas.shape[:2]
    ph, pw = photo.shape[:2]
    cw = int(rng.integers(min(48, pw), pw + 1))
    ch = int(rng.integers(min(48, ph), ph + 1))
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    scale = size / max(cw, ch) * rng.uniform(0.6, 1.4)
    angle = rng.uniform(-180, 180) if rng.random() < 0.6 else 0.0
    out = int(np.ceil(scale * np.hypot(cw, ch))) + 2
    A = cv2.getRotationMatrix2D(((cw - 1) / 2, (ch - 1) / 2), angle, scale)
    A[:, 2] += (out - 1) / 2 - np.array([(cw - 1) / 2, (ch - 1) / 2])
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    patch = cv2.warpAffine(np.ascontiguousarray(crop), A, (out, out), flags=flags, borderValue=(0, 0, 0))
    mask = cv2.warpAffine(np.full((ch, cw), 255, np.uint8), A, (out, out), flags=cv2.INTER_NEAREST) > 0
    tint = rng.uniform(0.7, 1.3, size=3)
    patch = np.clip(patch.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    cx, cy = int(rng.integers(-out // 2, W - out // 2)), int(rng.integers(-out // 2, H - out // 2))
    ax0, ay0 = max(cx, 0), max(cy, 0)
    ax1, ay1 = min(cx + out, W), min(cy + out, H)
    if ax0 >= ax1 or ay0 >= ay1:
        return
    sub = (slice(ay0 - cy, ay1 - cy), slice(ax0 - cx, ax1 - cx))
    region = canvas[ay0:ay1, ax0:ax1]
    m = mask[sub]
    region[m] = patch[sub][m]


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _draw_shapes(canvas: np.ndarray, rng: np.random.Generator, n: int, scale: float) -> None:
    """Procedural detail: rectangles, circles, polygons, lines, checker patches and text (lots of corners)."""
    H, W = canvas.shape[:2]
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)
    chars = string.ascii_letters + string.digits
    for _ in range(n):
        kind = rng.integers(0, 6)
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        s = max(4, int(scale * rng.uniform(0.2, 1.0)))
        col = _random_colour(rng)
        if kind == 0:
            cv2.rectangle(canvas, (x, y), (x + s, y + int(s * rng.uniform(0.3, 1.5))), col, -1 if rng.random() < 0.7 else 2)
        elif kind == 1:
            cv2.circle(canvas, (x, y), s // 2, col, -1 if rng.random() < 0.7 else 2, lineType=cv2.LINE_AA)
        elif kind == 2:
            pts = (np.array([x, y]) + rng.normal(0, s / 2, size=(int(rng.integers(3, 6)), 2))).astype(np.int32)
            cv2.fillPoly(canvas, [pts], col, lineType=cv2.LINE_AA)
        elif kind == 3:
            x2, y2 = x + int(rng.normal(0, s)), y + int(rng.normal(0, s))
            cv2.line(canvas, (x, y), (x2, y2), col, int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
        elif kind == 4:
            n_c = int(rng.integers(2, 5))
            cell = max(2, s // (2 * n_c))
            col2 = _random_colour(rng)
            for i in range(n_c):
                for j in range(n_c):
                    c = col if (i + j) % 2 == 0 else col2
                    cv2.rectangle(canvas, (x + i * cell, y + j * cell), (x + (i + 1) * cell - 1, y + (j + 1) * cell - 1), c, -1)
        else:
            text = "".join(rng.choice(list(chars), size=int(rng.integers(2, 7))))
            fs = max(0.4, s / 40.0)
            cv2.putText(canvas, text, (x, y), fonts[int(rng.integers(0, len(fonts)))], fs, col,
                        max(1, int(fs * 1.5)), lineType=cv2.LINE_AA)


def _photo_layer(rng: np.random.Generator, h: int, w: int, photo: np.ndarray, px_scale: float) -> np.ndarray:
    """``photo`` resampled at ``px_scale`` (texture px per photo px), randomly rotated/flipped/shifted, tiled
    by mirroring to fill ``(h, w)``: a seamless photographic surface, float32 RGB in [0, 255]."""
    img = photo if rng.random() < 0.5 else photo[:, ::-1]
    img = np.rot90(img, int(rng.integers(0, 4))) if rng.random() < 0.3 else img
    ph, pw = img.shape[:2]
    angle = rng.uniform(-20, 20) if rng.random() < 0.5 else 0.0
    A = cv2.getRotationMatrix2D(((pw - 1) / 2, (ph - 1) / 2), angle, px_scale)
    A[:, 2] += np.array([(w - 1) / 2, (h - 1) / 2]) - np.array([(pw - 1) / 2, (ph - 1) / 2]) + rng.uniform(-0.5, 0.5, 2) * (w, h)
    flags = cv2.INTER_AREA if px_scale < 1 else cv2.INTER_CUBIC
    return cv2.warpAffine(np.ascontiguousarray(img), A, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)


def _soft_mask(rng: np.random.Generator, h: int, w: int, cells: int = 3) -> np.ndarray:
    """A blobby [0, 1] mask with soft edges (a few px of feathering), covering ~30–60% of the canvas."""
    n = value_noise(rng, h, w, cells=(cells, 3 * cells))[:, :, 0]
    thr = rng.uniform(0.45, 0.65)
    edge = rng.uniform(0.02, 0.08)
    return np.clip((n - thr) / edge + 0.5, 0.0, 1.0)


def _draw_facade(canvas: np.ndarray, rng: np.random.Generator, photos) -> None:
    """Windows on a building face: a regular grid of framed, dark, reflective panes (in place, float32)."""
    H, W = canvas.shape[:2]
    cols, rows = int(rng.integers(3, 9)), int(rng.integers(2, 6))
    cw, ch = W / cols, H / rows
    fw, fh = rng.uniform(0.35, 0.65) * cw, rng.uniform(0.35, 0.6) * ch
    frame = rng.uniform(0.04, 0.1) * min(fw, fh)
    _, refl_photo = photos[int(rng.integers(0, len(photos)))]
    refl = _photo_layer(rng, H, W, refl_photo, rng.uniform(0.5, 1.5)) * rng.uniform(0.25, 0.5)
    frame_col = rng.uniform(0.6, 1.4, 3).astype(np.float32)
    for i in range(cols):
        for j in range(rows):
            if rng.random() < 0.08:
                continue  # a missing window (a door, a sign) keeps the grid from being perfectly periodic
            x0, y0 = int(i * cw + (cw - fw) / 2), int(j * ch + (ch - fh) / 2)
            x1, y1 = int(x0 + fw), int(y0 + fh)
            f = max(1, int(frame))
            canvas[y0 - f:y1 + f, x0 - f:x1 + f] *= frame_col * 1.1
            pane = canvas[y0:y1, x0:x1]
            pane[:] = pane * 0.25 + refl[y0:y1, x0:x1]
            if rng.random() < 0.5:  # a sill: a bright ledge with a shadow below
                canvas[y1 + f:y1 + 2 * f + 1, x0 - 2 * f:x1 + 2 * f] *= 1.3
                canvas[y1 + 2 * f + 1:y1 + 4 * f + 1, x0 - 2 * f:x1 + 2 * f] *= 0.6


def make_texture(
    rng: np.random.Generator, h: int, w: int, photos, photo_density: float = 1.0, shape_density: float = 0.03,
    grain: float = 0.2, facade: bool = False,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """A photographic surface: real photographs blended with soft masks, with shading and a little detail.

    The base is one photograph resampled to cover the whole texture; ``~photo_density`` further photographs
    per (300 px)² are blended in through soft, blobby masks (weathering, stains, patches of another
    material), the result is shaded by smooth low-frequency illumination, and only a few synthetic shapes
    (signs, marks) are drawn. ``facade`` adds a grid of framed, reflective windows (building faces).

    Args:
        rng: random stream.
        h, w: texture size in pixels.
        photos: ``(name, RGB uint8)`` pool to draw photographs from.
        photo_density: blended photographs per (300 px)² of texture.
        shape_density: synthetic shapes per (60 px)² of texture (0.03: a few per face).
        grain: amplitude of the unique fine grain (:func:`apply_grain`) that makes repeated patterns distinct.
        facade: draw windows.

    Returns:
        ``(texture uint8 (h, w, 3), names of the photographs used)``.
    """
    used = set()

    def layer() -> np.ndarray:
        name, photo = photos[int(rng.integers(0, len(photos)))]
        used.add(name)
        scale = float(np.exp(rng.uniform(np.log(0.35), np.log(1.3))))
        out = _photo_layer(rng, h, w, photo, scale)
        return out * rng.uniform(0.75, 1.25, size=3).astype(np.float32)  # material tint

    canvas = layer()
    for _ in range(int(rng.poisson(max(0.5, photo_density * h * w / 300.0**2)))):
        m = _soft_mask(rng, h, w, cells=int(rng.integers(2, 6)))[:, :, None]
        canvas = canvas * (1 - m) + layer() * m
    if facade:
        _draw_facade(canvas, rng, photos)
    shade = 0.75 + 0.5 * value_noise(rng, h, w, cells=(2, 5))[:, :, :1]  # soft shadows, dirt, uneven light
    canvas = np.clip(canvas * shade, 0, 255).astype(np.uint8)
    n_shapes = int(rng.poisson(shape_density * h * w / 60.0**2))
    _draw_shapes(canvas, rng, n_shapes, scale=min(h, w, 90))
    return apply_grain(canvas, rng, grain), tuple(sorted(used))


def apply_grain(canvas: np.ndarray, rng: np.random.Generator, amplitude: float = 0.35,
                cell_px: tuple[float, ...] = (5.0, 17.0)) -> np.ndarray:
    """Multiply ``canvas`` (uint8 RGB) by a unique fine-grained luminance noise ``1 + amplitude * (n - 0.5)``.

    Photo crops, glyphs and flat shapes recur across a world; without a unique grain, SIFT's ratio test keeps
    many matches between *different* copies of the same pattern. ``cell_px`` are the noise cell sizes in
    texture pixels (a few pixels: the scale of a SIFT descriptor cell at the texture's resolution).
    """
    if amplitude <= 0:
        return canvas
    h, w = canvas.shape[:2]
    n = np.zeros((h, w), np.float32)
    for c in cell_px:
        grid = rng.random((max(2, int(np.ceil(h / c))), max(2, int(np.ceil(w / c)))), dtype=np.float32)
        n += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    n = n / len(cell_px) - 0.5
    out = canvas.astype(np.float32) * (1.0 + amplitude * n)[:, :, None]
    return np.clip(out, 0, 255).astype(np.uint8)


def sky_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blue sky with soft clouds (weak texture, like a real sky)."""
    clouds = value_noise(rng, h, w, cells=(4, 12, 36))[:, :, :1]
    sky = np.array([110, 160, 225], np.float32)
    cloud = np.array([235, 235, 240], np.float32)
    t = np.clip((clouds - 0.45) * 2.5, 0, 1)
    return (sky * (1 - t) + cloud * t).astype(np.uint8)


# ------------------------------------------------------------------------------------------- worlds
@dataclass
class World:
    """Planes plus what cameras need to frame the scene: the object cluster's centre and radius."""

    planes: list[Plane]
    center: np.ndarray
    cluster_radius: float
    sources: set[str] = field(default_factory=set)


def _face(center, normal, size_w: float, size_h: float, texture: np.ndarray, name: str, two_sided=False, sources=()) -> Plane:
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
    return rect_plane(np.asarray(center, float), u, v, size_w, size_h, texture, two_sided=two_sided, name=name,
                      sources=tuple(sources))


def _tex_size(size_m: float, ppm: float, max_px: int = 2048) -> int:
    return int(np.clip(round(size_m * ppm), 32, max_px))


def _box_faces(rng, photos, center_xy, size, yaw: float, ppm: float, name: str, top: bool = True,
               facade: bool = False) -> list[Plane]:
    """The 4 side faces (and the top) of a box standing on the ground, outward-facing, single-sided;
    ``facade``: the side faces have windows."""
    sx, sy, sz = size
    c, s = np.cos(yaw), np.sin(yaw)
    ex, ey, ez = np.array([c, s, 0.0]), np.array([-s, c, 0.0]), np.array([0.0, 0.0, 1.0])
    base = np.array([center_xy[0], center_xy[1], 0.0])
    faces = []
    for k, (n, half, width) in enumerate([(ex, sx / 2, sy), (-ex, sx / 2, sy), (ey, sy / 2, sx), (-ey, sy / 2, sx)]):
        tex, src = make_texture(rng, _tex_size(sz, ppm), _tex_size(width, ppm), photos, facade=facade)
        faces.append(_face(base + n * half + ez * sz / 2, n, width, sz, tex, f"{name}_side{k}", sources=src))
    if top:
        tex, src = make_texture(rng, _tex_size(sy, ppm), _tex_size(sx, ppm), photos)
        top_face = rect_plane(base + ez * sz, ex, -ey, sx, sy, tex, two_sided=False, name=f"{name}_top", sources=src)
        faces.append(top_face)
    return faces


def build_world(rng: np.random.Generator, photos, n_objects: tuple[int, int] = (3, 6), n_buildings: tuple[int, int] = (2, 4),
                half_size: float = 45.0, height: float = 30.0, texture_scale: float = 1.0) -> World:
    """A plaza: textured ground, enclosing walls and sky (every ray hits something), buildings, boxes.

    World frame: metres, z up, ground at z = 0, the object cluster around the origin (radius ~5 m).
    Buildings stand 20 m or more from the origin, so cameras within 18 m of it never sit inside one.
    ``texture_scale`` scales every texture's resolution (pixels per metre); 1.0 suits 640-pixel-wide images,
    and the writers pass ``image width / 640`` so that small worlds (tests) are fast to build.
    """
    planes: list[Plane] = []
    L = half_size
    tile = 2 * L / 3
    # ground: 3x3 tiles, the central one (where cameras stand and look) at a higher resolution
    for i in range(3):
        for j in range(3):
            ppm = (48.0 if (i, j) == (1, 1) else 14.0) * texture_scale
            n_px = _tex_size(tile, ppm, max_px=1536)
            tex, src = make_texture(rng, n_px, n_px, photos)
            cx, cy = -L + tile * (i + 0.5), -L + tile * (j + 0.5)
            planes.append(_face((cx, cy, 0.0), (0, 0, 1), tile, tile, tex, f"ground{i}{j}", sources=src))
    # enclosing walls (inward-facing) and the sky
    for k, (n, p) in enumerate([((1, 0, 0), (-L, 0)), ((-1, 0, 0), (L, 0)), ((0, 1, 0), (0, -L)), ((0, -1, 0), (0, L))]):
        tex, src = make_texture(rng, _tex_size(height, 12.0 * texture_scale), _tex_size(2 * L, 12.0 * texture_scale), photos)
        planes.append(_face((p[0], p[1], height / 2), n, 2 * L, height, tex, f"wall{k}", sources=src))
    planes.append(_face((0, 0, height), (0, 0, -1), 2 * L, 2 * L, sky_texture(rng, 256, 256), "sky"))
    # buildings around the plaza, facing the centre
    nb = int(rng.integers(n_buildings[0], n_buildings[1] + 1))
    angles = rng.permutation(4)[:nb] * (np.pi / 2) + rng.uniform(-0.25, 0.25, size=nb) + rng.uniform(0, 2 * np.pi)
    for b, ang in enumerate(angles):
        w, d, h = rng.uniform(10, 20), rng.uniform(6, 10), rng.uniform(8, 16)
        r = 20.0 + d / 2
        planes += _box_faces(rng, photos, (r * np.cos(ang), r * np.sin(ang)), (d, w, h), ang, 28.0 * texture_scale, f"building{b}",
                             facade=True)
    # the object cluster
    no = int(rng.integers(n_objects[0], n_objects[1] + 1))
    for o in range(no):
        rad, ang = rng.uniform(0, 4.0), rng.uniform(0, 2 * np.pi)
        size = (rng.uniform(0.8, 3.0), rng.uniform(0.8, 3.0), rng.uniform(0.8, 3.5))
        planes += _box_faces(rng, photos, (rad * np.cos(ang), rad * np.sin(ang)), size, rng.uniform(0, np.pi), 90.0 * texture_scale,
                            f"box{o}")
    light_planes(rng, planes)
    sources = set().union(*[set(p.sources) for p in planes])
    return World(planes, np.array([0.0, 0.0, 1.0]), 5.0, sources)


def light_planes(rng: np.random.Generator, planes: list[Plane], skip: tuple[str, ...] = ("sky",)) -> None:
    """Bake a sun and sky light into the planes' textures (Lambertian, so the same from every view).

    One sun per world (elevation 20–65°, any azimuth) and an ambient term: a face turned to the sun is up
    to ~2.5× brighter than one in its own shadow, as on a sunny day.
    """
    el, az = np.radians(rng.uniform(20, 65)), rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    ambient = rng.uniform(0.35, 0.6)
    for p in planes:
        if p.name in skip:
            continue
        facing = -p.normal  # planes are seen (unmirrored) from the side opposite to axis_u x axis_v
        f = (ambient + (1 - ambient) * max(0.0, float(facing @ sun))) / (0.5 + 0.5 * ambient)
        p.texture = np.clip(p.texture.astype(np.float32) * f, 0, 255).astype(np.uint8)
        p._pyramid = None


def orbit_camera(rng: np.random.Generator, world: World, azimuth: float, radius: float, height: float,
                 size: tuple[int, int], f_range=(0.7, 1.05), roll_std: float = 5.0, target_jitter: float = 2.5) -> Camera:
    """A camera at ``(radius, azimuth, height)`` around the cluster, looking at a jittered cluster point."""
    W, H = size
    C = world.center[:2] + radius * np.array([np.cos(azimuth), np.sin(azimuth)])
    C = np.array([C[0], C[1], height])
    target = world.center + np.array([*rng.normal(0, target_jitter, 2), rng.uniform(-0.8, 1.5)])
    roll = float(np.clip(rng.normal(0, roll_std), -3 * roll_std, 3 * roll_std))
    R, t = look_at(C, target, roll)
    K = intrinsics(rng.uniform(*f_range) * W, W, H, *rng.normal(0, 2.0, 2))
    return Camera(K, R, t, W, H)


# ------------------------------------------------------------------------------------- photometry
def stylize(image: np.ndarray, rng: np.random.Generator, style: str = "day") -> np.ndarray:
    """Per-image photometric change → uint8 RGB.

    ``day``: exposure, gamma, colour cast, smooth shading, mild blur, sensor noise. ``strong``: the same with
    larger changes (HPatches illumination sequences). ``night``: dark, orange or blue cast, a few light pools,
    strong noise. Blurs are isotropic Gaussians, so the geometry does not move.
    """
    h, w = image.shape[:2]
    x = image.astype(np.float32) / 255.0
    shade_grid = rng.uniform(0.75, 1.25, size=(3, 4)).astype(np.float32)
    shade = cv2.resize(shade_grid, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, None]
    if style == "night":
        gain = rng.uniform(0.2, 0.4)
        cast = np.array([1.35, 1.0, 0.55]) if rng.random() < 0.5 else np.array([0.7, 0.9, 1.35])
        lights = np.zeros((h, w), np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(int(rng.integers(1, 4))):
            lx, ly, sd = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.3) * w
            lights += rng.uniform(1.0, 3.0) * np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * sd * sd))
        x = x * shade * (gain * (1.0 + lights))[:, :, None] * cast.astype(np.float32)
        gamma, blur, noise = rng.uniform(1.0, 1.3), rng.uniform(0.4, 0.9), rng.uniform(2.0, 5.0)
    else:
        big = style == "strong"
        gain = float(np.exp(rng.normal(0, 0.45 if big else 0.2)))
        cast = np.exp(rng.normal(0, 0.15 if big else 0.05, size=3)).astype(np.float32)
        x = x * shade * gain * cast
        gamma = float(np.exp(rng.normal(0, 0.25 if big else 0.1)))
        blur = rng.uniform(0.3, 1.0) if rng.random() < 0.4 else 0.0
        noise = rng.uniform(0.5, 3.0)
    x = np.clip(x, 0, 1) ** gamma
    if blur > 0:
        x = cv2.GaussianBlur(x, (0, 0), blur)
    x = x * 255.0 + rng.normal(0, noise, size=x.shape).astype(np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _render_checked(world: World, cam: Camera, what: str) -> tuple[np.ndarray, np.ndarray]:
    image, inv_depth, _ = render(world.planes, cam)
    if not (inv_depth > 0).all():
        raise RuntimeError(f"demo renderer left {int((inv_depth <= 0).sum())} pixels empty in {what}")
    return image, inv_depth


def _write_image(path: Path, rgb: np.ndarray, jpeg_quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise DataError(f"{path}: could not write image")


def _fmt(v: float) -> str:
    return f"{v:.9g}"


def img_cam_line(name: str, cam: Camera) -> str:
    """One ``img_cam.txt`` line: ``name w h fx fy cx cy R11..R33 t1 t2 t3``."""
    K = cam.K
    vals = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *cam.R.reshape(-1), *cam.t.reshape(-1)]
    return f"{name} {cam.width} {cam.height} " + " ".join(_fmt(v) for v in vals)


IMG_CAM_HEADER = "# name w h fx fy cx cy R11 R12 R13 R21 R22 R23 R31 R32 R33 t1 t2 t3 (world->camera, pixel (0,0) = centre of the top-left pixel)"


def _pairs_by_covisibility(cams: list[Camera], depths: list[np.ndarray], thr: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Co-visibility matrix (row: fraction of image i seen in image j) and the pairs with both directions ≥ thr."""
    n = len(cams)
    cov = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                cov[i, j] = covisibility(cams[i], depths[i], cams[j], depths[j])
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if min(cov[i, j], cov[j, i]) >= thr]
    return cov, pairs


# ---------------------------------------------------------------------------------------- MegaDepth
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


def write_megadepth_scene(root: Path, seed: int, k: int, n_images: int, size=(640, 480), min_covisibility: float = 0.1,
                          jpeg_quality: int = 92) -> tuple[str, dict]:
    """Scene ``k`` of the MegaDepth (CAPS) layout → ``(scene_id, summary)``.

    Scene ``k`` with ``k % 4 == 1`` has cameras all around the cluster (pairs above 80° exist).
    """
    scene_id = megadepth_scene_ids(k + 1)[k]
    rng = _rng(seed, "megadepth", k)
    world = build_world(rng, photo_pool("train"), texture_scale=size[0] / 640.0)
    spread = 2 * np.pi if k % 4 == 1 else np.radians(rng.uniform(60, 110))
    az0 = rng.uniform(0, 2 * np.pi)
    cams, depths = [], []
    out = root / scene_id / "dense0" / "aligned"
    lines = [IMG_CAM_HEADER]
    for i in range(n_images):
        if spread >= 2 * np.pi - 1e-9:
            az = az0 + 2 * np.pi * i / n_images + rng.normal(0, 0.1)
        else:
            az = az0 + rng.uniform(-spread / 2, spread / 2)
        height = rng.uniform(4.0, 9.0) if rng.random() < 0.2 else rng.uniform(1.3, 3.0)
        cam = orbit_camera(rng, world, az, rng.uniform(7.0, 17.0), height, size)
        name = f"{i:04d}.jpg"
        image, inv_depth = _render_checked(world, cam, f"megadepth/{scene_id}/{name}")
        _write_image(out / "images" / name, stylize(image, rng, "day"), jpeg_quality)
        lines.append(img_cam_line(name, cam))
        cams.append(cam)
        depths.append(inv_depth)
    cov, pairs = _pairs_by_covisibility(cams, depths, min_covisibility)
    (out / "img_cam.txt").write_text("\n".join(lines) + "\n")
    (out / "pairs.txt").write_text("".join(f"{i:04d}.jpg {j:04d}.jpg\n" for i, j in pairs))
    rot = [np.degrees(np.arccos(np.clip((np.trace(cams[j].R @ cams[i].R.T) - 1) / 2, -1, 1))) for i, j in pairs]
    return scene_id, {"images": n_images, "pairs": len(pairs), "pairs_over_80deg": int(np.sum(np.array(rot) > 80))}


def write_megadepth(root: Path, seed: int, n_scenes: int, n_images: int, size=(640, 480), min_covisibility: float = 0.1,
                    jpeg_quality: int = 92) -> dict:
    """MegaDepth (CAPS) layout: ``n_scenes`` scenes of :func:`write_megadepth_scene`, one after the other."""
    scenes = {}
    for k in tqdm(range(n_scenes), desc="demo megadepth", leave=False):
        scene_id, info = write_megadepth_scene(root, seed, k, n_images, size, min_covisibility, jpeg_quality)
        scenes[scene_id] = info
    return {"scenes": scenes}


# ----------------------------------------------------------------------------------------- HPatches
def _write_h(path: Path, H: np.ndarray) -> None:
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
            roll = rng.normal(0, 4.0) + (rng.choice([-1, 1]) * rng.uniform(0, 25) * (k / 5) if rng.random() < 0.4 else 0.0)
            R, t = look_at(target + dist * view, target, roll, up=-ey)
            K = intrinsics(rng.uniform(0.8, 1.0) * W, W, H)
            cam = Camera(K, R, t, W, H)
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
    rng = _rng(seed, "hpatches_i", s)
    world = build_world(rng, photo_pool("eval"), n_buildings=(3, 4), texture_scale=W / 640.0)
    cam = orbit_camera(rng, world, rng.uniform(0, 2 * np.pi), rng.uniform(4.0, 9.0), rng.uniform(1.0, 3.0), size)
    image, _ = _render_checked(world, cam, f"hpatches/i_demo{s:02d}")
    name = f"i_demo{s:02d}"
    d = root / name
    d.mkdir(parents=True)
    n_night = int(rng.integers(0, 3))
    styles = ["day"] + ["strong"] * (5 - n_night) + ["night"] * n_night
    for k, style in enumerate(styles, start=1):
        _write_image(d / f"{k}.ppm", stylize(image, rng, style), 0)
        if k > 1:
            _write_h(d / f"H_1_{k}", np.eye(3))
    return name


def write_hpatches_v(root: Path, seed: int, s: int, size=(480, 352)) -> str:
    """Viewpoint sequence ``v_demo<s>``: one textured plane seen by six cameras, exact ``H_1_k``."""
    W, _ = size
    rng = _rng(seed, "hpatches_v", s)
    ts = W / 480.0  # texture resolution follows the image size (small sequences for tests are fast)
    tex, _ = make_texture(rng, int(round(1200 * ts)), int(round(1600 * ts)), photo_pool("eval"),
                          photo_density=1.3)
    plane = rect_plane(np.zeros(3), (1, 0, 0), (0, -1, 0), 8.0, 6.0, tex, two_sided=False, name="v_plane")
    # normal = u x v = (1,0,0)x(0,-1,0) = -z: seen unmirrored from +z
    cams = _hpatches_v_cameras(rng, plane, size)
    name = f"v_demo{s:02d}"
    d = root / name
    d.mkdir(parents=True)
    H1 = plane_homography(plane, cams[0])
    for k, cam in enumerate(cams, start=1):
        image, _, _ = render([plane], cam)
        _write_image(d / f"{k}.ppm", stylize(image, rng, "day"), 0)
        if k > 1:
            _write_h(d / f"H_1_{k}", plane_homography(plane, cam) @ np.linalg.inv(H1))
    return name


def write_hpatches(root: Path, seed: int, n_sequences: int, size=(480, 352)) -> dict:
    """``n_sequences`` ``i_*`` and ``n_sequences`` ``v_*`` sequences (6 PPM images and 5 ``H_1_k`` each)."""
    return {
        "i": [write_hpatches_i(root, seed, s, size) for s in tqdm(range(n_sequences), desc="demo hpatches i_", leave=False)],
        "v": [write_hpatches_v(root, seed, s, size) for s in tqdm(range(n_sequences), desc="demo hpatches v_", leave=False)],
    }


# ---------------------------------------------------------------------------------------------- ETH
def eth_scene_name(k: int) -> str:
    """Name of ETH scene ``k``."""
    return ETH_SCENE_NAMES[k] if k < len(ETH_SCENE_NAMES) else f"Scene{k:02d}"


def write_eth_scene(root: Path, seed: int, k: int, n_images: int, size=(640, 480), jpeg_quality: int = 92) -> tuple[str, int]:
    """ETH scene ``k``: ``<Scene>/images/*.jpg`` + ``gt_cameras.txt``; cameras on a 150° arc around the cluster."""
    rng = _rng(seed, "eth", k)
    scene = eth_scene_name(k)
    world = build_world(rng, photo_pool("eval"), n_objects=(5, 7), texture_scale=size[0] / 640.0)
    az0, spread = rng.uniform(0, 2 * np.pi), np.radians(150)
    lines = [IMG_CAM_HEADER]
    for i in range(n_images):
        az = az0 + spread * (i / max(n_images - 1, 1) - 0.5) + rng.normal(0, 0.03)
        cam = orbit_camera(rng, world, az, rng.uniform(7.0, 10.0), rng.uniform(1.5, 4.0), size,
                           f_range=(0.8, 1.0), roll_std=3.0, target_jitter=1.0)
        name = f"{i:04d}.jpg"
        image, _ = _render_checked(world, cam, f"eth/{scene}/{name}")
        _write_image(root / scene / "images" / name, stylize(image, rng, "day"), jpeg_quality)
        lines.append(img_cam_line(name, cam))
    (root / scene / "gt_cameras.txt").write_text("\n".join(lines) + "\n")
    return scene, n_images


def write_eth(root: Path, seed: int, n_scenes: int, n_images: int, size=(640, 480), jpeg_quality: int = 92) -> dict:
    """ETH layout: ``n_scenes`` scenes of :func:`write_eth_scene`."""
    return dict(write_eth_scene(root, seed, k, n_images, size, jpeg_quality)
                for k in tqdm(range(n_scenes), desc="demo eth", leave=False))


# ------------------------------------------------------------------------------------------- Aachen
def _colmap_params(cam: Camera) -> list[float]:
    """SIMPLE_RADIAL ``f cx cy k`` in COLMAP's pixel convention (principal point + 0.5), ``k = 0``."""
    return [float(cam.K[0, 0]), float(cam.K[0, 2]) + 0.5, float(cam.K[1, 2]) + 0.5, 0.0]


def _intrinsics_line(name: str, cam: Camera) -> str:
    return f"{name} SIMPLE_RADIAL {cam.width} {cam.height} " + " ".join(_fmt(v) for v in _colmap_params(cam))


def _write_aachen_model(path: Path, names: list[str], cams: list[Camera], depths: list[np.ndarray], rng: np.random.Generator,
                        points_per_image: int = 60) -> int:
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
        camera = pycolmap.Camera(model="SIMPLE_RADIAL", width=cam.width, height=cam.height,
                                 params=_colmap_params(cam), camera_id=i + 1)
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


def write_aachen(root: Path, seed: int, n_db: int, n_day: int, n_night: int, size=(640, 480), jpeg_quality: int = 92,
                 pairs_per_query: int = 10, db_neighbours: int = 5) -> dict:
    """Aachen Day-Night v1.1 layout with ground-truth query poses (``queries/ground_truth_queries.txt``)."""
    rng = _rng(seed, "aachen", 0)
    world = build_world(rng, photo_pool("eval"), n_objects=(5, 7), n_buildings=(3, 4), texture_scale=size[0] / 640.0)
    up = root / "images" / "images_upright"
    db_names, db_cams, db_depths = [], [], []
    db_lines = []
    az0 = rng.uniform(0, 2 * np.pi)
    for i in range(n_db):
        az = az0 + 2 * np.pi * i / n_db + rng.normal(0, 0.05)
        cam = orbit_camera(rng, world, az, rng.uniform(8.0, 15.0), rng.uniform(1.4, 4.0), size, f_range=(0.75, 1.0),
                           roll_std=2.0)
        name = f"db/{1000 + i}.jpg"
        image, inv_depth = _render_checked(world, cam, f"aachen/{name}")
        _write_image(up / name, stylize(image, rng, "day"), jpeg_quality)
        db_names.append(name)
        db_cams.append(cam)
        db_depths.append(inv_depth)
        db_lines.append(_intrinsics_line(name, cam))
    # queries: near (not at) a db camera, perturbed position and orientation
    queries = []
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
        cam = Camera(K, R, t, *size)
        name = f"query/{'night' if night else 'day'}/{device}/IMG_{'night' if night else 'day'}_{q:04d}.jpg"
        image, inv_depth = _render_checked(world, cam, f"aachen/{name}")
        _write_image(up / name, stylize(image, rng, "night" if night else "day"), jpeg_quality)
        queries.append((name, cam, inv_depth, night))
    # pairs: each query with its most co-visible db images; db-db among neighbours
    pairs: list[tuple[str, str]] = []
    for name, cam, inv_depth, _ in queries:
        cov = np.array([covisibility(cam, inv_depth, c, d) for c, d in zip(db_cams, db_depths)])
        for j in np.argsort(-cov, kind="stable")[:pairs_per_query]:
            if cov[j] > 0:
                pairs.append((name, db_names[j]))
    cov_db = np.zeros((n_db, n_db))
    for i in range(n_db):
        for j in range(n_db):
            if i != j:
                cov_db[i, j] = covisibility(db_cams[i], db_depths[i], db_cams[j], db_depths[j])
    sym = np.minimum(cov_db, cov_db.T)
    seen = set()
    for i in range(n_db):
        for j in np.argsort(-sym[i], kind="stable")[:db_neighbours]:
            key = (min(i, int(j)), max(i, int(j)))
            if sym[i, j] > 0.05 and key not in seen:
                seen.add(key)
                pairs.append((db_names[key[0]], db_names[key[1]]))
    model = root / "3D-models" / "aachen_v_1_1"
    n_points = _write_aachen_model(model, db_names, db_cams, db_depths, rng)
    (model / "database_intrinsics_v1_1.txt").write_text("\n".join(db_lines) + "\n")
    qdir = root / "queries"
    qdir.mkdir(parents=True, exist_ok=True)
    (qdir / "day_time_queries_with_intrinsics.txt").write_text(
        "".join(_intrinsics_line(n, c) + "\n" for n, c, _, night in queries if not night))
    (qdir / "night_time_queries_with_intrinsics_v1_1.txt").write_text(
        "".join(_intrinsics_line(n, c) + "\n" for n, c, _, night in queries if night))
    gt = []
    for n, c, _, _ in queries:
        q = rotmat_to_qvec(c.R)
        gt.append(f"{n} " + " ".join(_fmt(v) for v in [*q, *c.t]))
    (qdir / "ground_truth_queries.txt").write_text("\n".join(gt) + "\n")
    (root / "others").mkdir(parents=True, exist_ok=True)
    (root / "others" / "image_pairs_to_match_v1_1.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    return {"db_images": n_db, "day_queries": n_day, "night_queries": n_night, "pairs": len(pairs), "points3D": n_points}


# ------------------------------------------------------------------------------------------ the world
def _demo_tasks(cfg: dict) -> list[tuple[str, int]]:
    """The independent work items of a demo world, biggest first (for load balancing)."""
    tasks = [("aachen", 0)]
    tasks += [("megadepth", k) for k in range(cfg["megadepth_scenes"])]
    tasks += [("eth", k) for k in range(cfg["eth_scenes"])]
    tasks += [("hpatches_i", s) for s in range(cfg["hpatches_sequences"])]
    tasks += [("hpatches_v", s) for s in range(cfg["hpatches_sequences"])]
    return tasks


def _run_task(out: Path, seed: int, cfg: dict, kind: str, index: int):
    """Render one work item of :func:`_demo_tasks` (each has its own random stream: the order is free)."""
    if kind == "megadepth":
        return write_megadepth_scene(out / "megadepth", seed, index, cfg["megadepth_images"], tuple(cfg["megadepth_size"]),
                                     cfg["min_covisibility"], cfg["jpeg_quality"])
    if kind == "hpatches_i":
        return write_hpatches_i(out / "hpatches", seed, index, tuple(cfg["hpatches_size"]))
    if kind == "hpatches_v":
        return write_hpatches_v(out / "hpatches", seed, index, tuple(cfg["hpatches_size"]))
    if kind == "eth":
        return write_eth_scene(out / "eth", seed, index, cfg["eth_images"], tuple(cfg["eth_size"]), cfg["jpeg_quality"])
    if kind == "aachen":
        return write_aachen(out / "aachen", seed, cfg["aachen_db_images"], cfg["aachen_day_queries"],
                            cfg["aachen_night_queries"], tuple(cfg["aachen_size"]), cfg["jpeg_quality"])
    raise ValueError(f"unknown demo task {kind!r}")


def generate_demo(out_dir: str | os.PathLike, seed: int = 0, workers: int | None = None, **sizes) -> dict:
    """Render the demo world into ``out_dir/{megadepth,hpatches,aachen,eth}`` (``out_dir`` must not exist
    or be empty). Deterministic for a seed, whatever the number of workers.

    Args:
        out_dir: output folder.
        seed: world seed.
        workers: processes rendering scenes in parallel (default: the CPU count, at most 8; ``1``: in this
            process). Every scene has its own random stream, so the files do not depend on it.
        **sizes: overrides of :data:`DEFAULT_SIZES` (counts, ``*_size`` ``(W, H)`` image sizes,
            ``min_covisibility`` for MegaDepth pairs, ``jpeg_quality``).

    Returns:
        A summary dict (counts per dataset, ``seconds``, ``bytes``).
    """
    unknown = set(sizes) - set(DEFAULT_SIZES)
    if unknown:
        raise ValueError(f"unknown demo parameters: {sorted(unknown)} (known: {sorted(DEFAULT_SIZES)})")
    cfg = {**DEFAULT_SIZES, **sizes}
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output folder exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    for d in ("megadepth", "hpatches", "eth"):
        (out / d).mkdir()
    t0 = time.perf_counter()
    tasks = _demo_tasks(cfg)
    workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
    workers = max(1, min(workers, len(tasks)))
    results: dict[tuple[str, int], object] = {}
    with tqdm(total=len(tasks), desc="demo world", unit="scene") as bar:
        if workers == 1:
            for task in tasks:
                results[task] = _run_task(out, seed, cfg, *task)
                bar.update()
        else:
            # spawn, not fork: the parent may hold OpenMP/BLAS thread pools (torch) that fork does not survive
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = {pool.submit(_run_task, out, seed, cfg, *task): task for task in tasks}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
    summary = {"seed": int(seed), "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}
    summary["megadepth"] = {"scenes": dict(results[("megadepth", k)] for k in range(cfg["megadepth_scenes"]))}
    summary["hpatches"] = {kind: [results[(f"hpatches_{kind}", s)] for s in range(cfg["hpatches_sequences"])]
                           for kind in ("i", "v")}
    summary["eth"] = dict(results[("eth", k)] for k in range(cfg["eth_scenes"]))
    summary["aachen"] = results[("aachen", 0)]
    summary["workers"] = workers
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["bytes"] = int(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))
    return summary


def tree_digest(root: str | os.PathLike) -> str:
    """SHA-256 over the relative paths and contents of every file under ``root`` (a determinism check)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def run_cli(args: argparse.Namespace) -> int:
    """``python -m posfeat demo --out DIR --seed N``: render the demo world (default sizes) atomically,
    with ``DIR/megadepth_metadata.json`` (the MegaDepth metadata manifest)."""
    from posfeat.data.manifest import write_metadata_manifest
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        logger.info("replacing %s", out)
    with atomic_path(out) as tmp:
        summary = generate_demo(tmp, seed=args.seed)
        write_metadata_manifest(tmp / "megadepth", tmp / "megadepth_metadata.json")
    logger.info("demo world written to %s in %.1f s (%.1f MB)", out, summary["seconds"], summary["bytes"] / 1e6)
    return 0
