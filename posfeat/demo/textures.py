"""Textures of the demo world: the photo pool (train and evaluation photographs kept apart), procedural
layers (value noise, shapes, text), :func:`make_texture` that blends them, the
per-texture grain (:func:`apply_grain`) and the sky.

Training scenes (MegaDepth) only use the photographs in :data:`TRAIN_PHOTOS`; evaluation scenes (HPatches,
Aachen, ETH) only use :data:`EVAL_PHOTOS`. Procedural layers are drawn from per-scene random streams, so no
two scenes share a texture either. Photo crops, glyphs and flat shapes recur within a world, so every
texture finally gets a unique fine grain: without it, SIFT's ratio test keeps many matches between
different copies of one pattern.
"""

from __future__ import annotations

import functools
import string

import cv2
import numpy as np

#: scikit-image sample photographs (shipped with the package, no download) used by TRAINING scenes.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "camera",
    "brick",
    "grass",
    "clock",
    "page",
    "hubble_deep_field",
)


#: photographs used by EVALUATION scenes (HPatches, Aachen, ETH); disjoint from :data:`TRAIN_PHOTOS`.
EVAL_PHOTOS: tuple[str, ...] = (
    "rocket",
    "gravel",
    "coins",
    "text",
    "moon",
    "immunohistochemistry",
    "retina",
    "cell",
    "stereo_motorcycle",
    "logo",
)


def _to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    """Any sample image (bool, float, grey, RGBA on white) as contiguous uint8 RGB."""
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


@functools.lru_cache(maxsize=4)
def photo_pool(split: str) -> tuple[tuple[str, np.ndarray], ...]:
    """The photographs of a split (``"train"`` or ``"eval"``) as ``(name, RGB uint8)`` tuples."""
    import skimage.data

    names = {"train": TRAIN_PHOTOS, "eval": EVAL_PHOTOS}[split]
    out = []
    for name in names:
        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
            out.append((f"{name}_left", _to_rgb_uint8(img[0])))
            out.append((f"{name}_right", _to_rgb_uint8(img[1])))
        else:
            out.append((name, _to_rgb_uint8(img)))
    return tuple(out)


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
    """A random RGB colour (one draw of three integers in 0..255)."""
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
            cv2.rectangle(
                canvas, (x, y), (x + s, y + int(s * rng.uniform(0.3, 1.5))), col, -1 if rng.random() < 0.7 else 2
            )
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
                    cv2.rectangle(
                        canvas, (x + i * cell, y + j * cell), (x + (i + 1) * cell - 1, y + (j + 1) * cell - 1), c, -1
                    )
        else:
            text = "".join(rng.choice(list(chars), size=int(rng.integers(2, 7))))
            fs = max(0.4, s / 40.0)
            cv2.putText(
                canvas,
                text,
                (x, y),
                fonts[int(rng.integers(0, len(fonts)))],
                fs,
                col,
                max(1, int(fs * 1.5)),
                lineType=cv2.LINE_AA,
            )


def make_texture(
    rng: np.random.Generator,
    h: int,
    w: int,
    photos,
    photo_density: float = 1.0,
    shape_density: float = 1.0,
    grain: float = 0.35,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """A rich synthetic texture: colour noise base, a mosaic of hard-edged photo crops, shapes and text.

    Args:
        rng: random stream.
        h, w: texture size in pixels.
        photos: ``(name, RGB uint8)`` pool to draw crops from.
        photo_density: photo crops per (180 px)² of texture.
        shape_density: shapes per (60 px)² of texture.
        grain: amplitude of the unique fine grain (:func:`apply_grain`) that makes repeated patterns distinct.

    Returns:
        ``(texture uint8 (h, w, 3), names of the photographs used)``.
    """
    base = value_noise(rng, h, w)
    palette = rng.uniform(40, 220, size=(2, 3)).astype(np.float32)
    canvas = (palette[0] + base * (palette[1] - palette[0])).astype(np.uint8)
    used = set()
    n_photos = max(1, int(round(photo_density * h * w / 180.0**2)))
    patch_size = min(h, w, 260)
    for _ in range(n_photos):
        name, photo = photos[int(rng.integers(0, len(photos)))]
        used.add(name)
        _paste_photo(canvas, rng, photo, int(rng.uniform(0.4, 1.0) * patch_size))
    n_shapes = int(round(shape_density * h * w / 60.0**2))
    _draw_shapes(canvas, rng, n_shapes, scale=min(h, w, 90))
    return apply_grain(canvas, rng, grain), tuple(sorted(used))


def apply_grain(
    canvas: np.ndarray, rng: np.random.Generator, amplitude: float = 0.35, cell_px: tuple[float, ...] = (5.0, 17.0)
) -> np.ndarray:
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
