"""Textures of the demo world: the photo pool (train and evaluation photographs kept apart), procedural
layers (value noise, shapes, text, facades with windows), :func:`make_texture` that blends them, the
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
#: photographs added to the training pool by the ``photographic`` style (from matplotlib's sample data)
EXTRA_TRAIN_PHOTOS: tuple[str, ...] = ("grace_hopper", "jacksboro_fault_dem")
#: texture styles of the demo world (params ``demo.textures``)
STYLES = ("classic", "photographic")


#: images that come with matplotlib (its sample data) rather than scikit-image; the DEM is hill-shaded.
MATPLOTLIB_PHOTOS = {"grace_hopper": "grace_hopper.jpg", "jacksboro_fault_dem": "jacksboro_fault_dem.npz"}


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
def photo_pool(split: str, style: str = "classic") -> tuple[tuple[str, np.ndarray], ...]:
    """The photographs of a split (``"train"`` or ``"eval"``) as ``(name, RGB uint8)`` tuples; the
    ``photographic`` style adds :data:`EXTRA_TRAIN_PHOTOS` to the training pool."""
    import skimage.data

    check_style(style)
    names = {"train": TRAIN_PHOTOS + (EXTRA_TRAIN_PHOTOS if style == "photographic" else ()), "eval": EVAL_PHOTOS}[
        split
    ]
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
        rgb = LightSource(azdeg=315, altdeg=40).shade(
            z, cmap=colormaps["gist_earth"], vert_exag=0.05, blend_mode="soft"
        )
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


def _photo_layer(rng: np.random.Generator, h: int, w: int, photo: np.ndarray, px_scale: float) -> np.ndarray:
    """``photo`` resampled at ``px_scale`` (texture px per photo px), randomly rotated/flipped/shifted, tiled
    by mirroring to fill ``(h, w)``: a seamless photographic surface, float32 RGB in [0, 255]."""
    img = photo if rng.random() < 0.5 else photo[:, ::-1]
    img = np.rot90(img, int(rng.integers(0, 4))) if rng.random() < 0.3 else img
    ph, pw = img.shape[:2]
    angle = rng.uniform(-20, 20) if rng.random() < 0.5 else 0.0
    A = cv2.getRotationMatrix2D(((pw - 1) / 2, (ph - 1) / 2), angle, px_scale)
    A[:, 2] += (
        np.array([(w - 1) / 2, (h - 1) / 2])
        - np.array([(pw - 1) / 2, (ph - 1) / 2])
        + rng.uniform(-0.5, 0.5, 2) * (w, h)
    )
    flags = cv2.INTER_AREA if px_scale < 1 else cv2.INTER_CUBIC
    return cv2.warpAffine(np.ascontiguousarray(img), A, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT_101).astype(
        np.float32
    )


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
            canvas[y0 - f : y1 + f, x0 - f : x1 + f] *= frame_col * 1.1
            pane = canvas[y0:y1, x0:x1]
            pane[:] = pane * 0.25 + refl[y0:y1, x0:x1]
            if rng.random() < 0.5:  # a sill: a bright ledge with a shadow below
                canvas[y1 + f : y1 + 2 * f + 1, x0 - 2 * f : x1 + 2 * f] *= 1.3
                canvas[y1 + 2 * f + 1 : y1 + 4 * f + 1, x0 - 2 * f : x1 + 2 * f] *= 0.6


def check_style(style: str) -> str:
    """``style`` if it is one of :data:`STYLES`, else a ``ValueError`` naming the choices."""
    if style not in STYLES:
        raise ValueError(f"demo textures must be one of {STYLES}, got {style!r}")
    return style


def make_texture(
    rng: np.random.Generator,
    h: int,
    w: int,
    photos,
    photo_density: float = 1.0,
    shape_density: float | None = None,
    grain: float | None = None,
    facade: bool = False,
    style: str = "classic",
) -> tuple[np.ndarray, tuple[str, ...]]:
    """A texture in the demo world's ``style`` (:func:`classic_texture` or :func:`photographic_texture`).

    ``shape_density`` and ``grain`` default to the style's own (classic 1.0 and 0.35, photographic 0.03
    and 0.2); ``facade`` (windows) only applies to the photographic style.
    """
    if check_style(style) == "classic":
        return classic_texture(
            rng,
            h,
            w,
            photos,
            photo_density,
            1.0 if shape_density is None else shape_density,
            0.35 if grain is None else grain,
        )
    return photographic_texture(
        rng,
        h,
        w,
        photos,
        photo_density,
        0.03 if shape_density is None else shape_density,
        0.2 if grain is None else grain,
        facade,
    )


def classic_texture(
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


def photographic_texture(
    rng: np.random.Generator,
    h: int,
    w: int,
    photos,
    photo_density: float = 1.0,
    shape_density: float = 0.03,
    grain: float = 0.2,
    facade: bool = False,
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
