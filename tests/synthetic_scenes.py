"""Tiny ray-cast scenes with exact cameras for the COLMAP tests and benchmark (not a test module).

A scene is a few textured rectangles in 3D (a ground plane, a back wall, a box face, ...). Images are
rendered per pixel: the camera ray of pixel (x, y) (pixel centres at integers, our convention) is
intersected with every rectangle, the nearest hit wins (depth test) and its texture is sampled
bilinearly. Poses are world→camera (x_cam = R·X + t), as everywhere in the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from posfeat.io import FeatureWriter


@dataclass
class Plane:
    origin: np.ndarray  # 3, corner of the rectangle
    u: np.ndarray  # 3, edge vector (texture x)
    v: np.ndarray  # 3, edge vector (texture y)
    texture: np.ndarray  # H×W×3 uint8


@dataclass
class View:
    name: str
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int


def _textures() -> list[np.ndarray]:
    out = []
    for n in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat"):
        im = getattr(skimage.data, n)()
        out.append(np.ascontiguousarray(im[..., :3]))
    for n in ("brick", "gravel", "camera", "grass"):
        g = getattr(skimage.data, n)()
        out.append(np.repeat(g[..., None], 3, axis=2))
    return out


def default_planes() -> list[Plane]:
    """A ground plane, a back wall, a side wall and a box front: clearly non-planar, well textured."""
    tex = _textures()
    P = lambda o, u, v, i: Plane(np.array(o, float), np.array(u, float), np.array(v, float), tex[i])  # noqa: E731
    return [
        P([-4, 2, -1], [8, 0, 0], [0, 0, 7], 0),  # ground y=2 (y down), z from -1..6
        P([-4, -3, 6], [8, 0, 0], [0, 5, 0], 1),  # back wall z=6
        P([-4, -3, -1], [0, 0, 7], [0, 5, 0], 4),  # left wall x=-4
        P([-1, 0, 2.5], [2, 0, 0], [0, 2, 0], 2),  # box front face z=2.5
        P([1, 0, 2.5], [0, 0, 1.5], [0, 2, 0], 3),  # box right side x=1
        P([-1, 0, 2.5], [2, 0, 0], [0, 0, 1.5], 5),  # box top y=0
    ]


def look_at(center: np.ndarray, target: np.ndarray, up=(0.0, -1.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """World→camera (R, t) of a camera at ``center`` looking at ``target`` (y down in the image)."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(np.asarray(up, float), z)
    x = -x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    if np.linalg.det(R) < 0:
        R[0] *= -1
    return R, -R @ center


def render(planes: list[Plane], view: View) -> np.ndarray:
    """Ray-cast the planes into an RGB uint8 image (background grey 0 where nothing is hit)."""
    w, h = view.width, view.height
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(-1, 3)
    d = (np.linalg.inv(view.K) @ pix.T).T @ view.R  # ray directions in world (rows: R^T d)
    C = -view.R.T @ view.t
    best = np.full(len(d), np.inf)
    out = np.zeros((len(d), 3), np.float32)
    for pl in planes:
        n = np.cross(pl.u, pl.v)
        denom = d @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = ((pl.origin - C) @ n) / denom
        X = C + lam[:, None] * d
        a = (X - pl.origin) @ pl.u / (pl.u @ pl.u)
        b = (X - pl.origin) @ pl.v / (pl.v @ pl.v)
        hit = (lam > 1e-6) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1) & (lam < best)
        if not hit.any():
            continue
        th, tw = pl.texture.shape[:2]
        m = int(hit.sum())
        cols = 1024
        pad = (-m) % cols
        mapx = np.pad(a[hit] * (tw - 1), (0, pad)).astype(np.float32).reshape(-1, cols)
        mapy = np.pad(b[hit] * (th - 1), (0, pad)).astype(np.float32).reshape(-1, cols)
        col = cv2.remap(pl.texture, mapx, mapy, cv2.INTER_LINEAR).reshape(-1, 3)[:m]
        out[hit] = col
        best[hit] = lam[hit]
    return np.clip(out.reshape(h, w, 3), 0, 255).astype(np.uint8)


def make_views(
    n: int,
    width: int = 320,
    height: int = 240,
    radius: float = 7.0,
    spread_deg: float = 40.0,
    prefix: str = "img",
    seed: int = 0,
) -> list[View]:
    """``n`` cameras on an arc in front of the scene, looking at its middle, slightly jittered."""
    rng = np.random.default_rng(seed)
    f = 0.9 * width
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    target = np.array([0.0, 0.5, 3.0])
    views = []
    for i, ang in enumerate(np.linspace(-spread_deg / 2, spread_deg / 2, n)):
        a = np.deg2rad(ang)
        center = target + radius * np.array([np.sin(a), 0.0, -np.cos(a)]) + rng.normal(0, 0.15, 3) + [0, -1.2, 0]
        R, t = look_at(center, target + rng.normal(0, 0.2, 3))
        views.append(View(f"{prefix}{i:02d}.png", K.copy(), R, t, width, height))
    return views


def sift_features(image: np.ndarray, max_keypoints: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV SIFT: keypoints (N×2, our convention), scores (N), L2-normalised descriptors (N×128)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    sift = cv2.SIFT_create(nfeatures=max_keypoints)
    kps, desc = sift.detectAndCompute(gray, None)
    if desc is None or len(kps) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, 128), np.float32)
    # OpenCV's keypoint coordinates already put the centre of the top-left pixel at (0, 0).
    xy = np.array([k.pt for k in kps], np.float32)
    sc = np.array([k.response for k in kps], np.float32)
    desc = desc.astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True).clip(1e-8)
    return xy, sc, desc


def write_gt_cameras(path: Path, views: list[View]) -> None:
    """``name w h fx fy cx cy R11..R33 t1 t2 t3`` per line (the img_cam.txt format)."""
    lines = []
    for v in views:
        vals = [v.width, v.height, v.K[0, 0], v.K[1, 1], v.K[0, 2], v.K[1, 2], *v.R.reshape(-1), *v.t]
        lines.append(v.name + " " + " ".join(f"{x:.10g}" for x in vals))
    path.write_text("\n".join(lines) + "\n")


def make_eth_scene(
    root: Path,
    n_images: int = 7,
    scene: str = "Synth",
    seed: int = 0,
    features_prefix: str | None = None,
    features_path: Path | None = None,
    blank: bool = False,
) -> tuple[Path, Path, list[View]]:
    """Write ``root/<scene>/{images/*.png, gt_cameras.txt}`` and SIFT features; returns (scene_dir, h5, views).

    Feature names are ``<features_prefix>images/<name>`` (default prefix ``"<scene>/"``, i.e. features
    extracted over the ETH root). ``blank``: uniform grey images (no features, no matches).
    """
    scene_dir = Path(root) / scene
    (scene_dir / "images").mkdir(parents=True, exist_ok=True)
    views = make_views(n_images, seed=seed)
    planes = default_planes()
    prefix = f"{scene}/" if features_prefix is None else features_prefix
    h5 = features_path or Path(root) / f"features_{scene}.h5"
    with FeatureWriter(h5) as fw:
        for v in views:
            img = np.full((v.height, v.width, 3), 128, np.uint8) if blank else render(planes, v)
            cv2.imwrite(str(scene_dir / "images" / v.name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            xy, sc, de = sift_features(img)
            fw.add(prefix + "images/" + v.name, xy, sc, de, (v.width, v.height))
    write_gt_cameras(scene_dir / "gt_cameras.txt", views)
    return scene_dir, h5, views


def sift_features_of_folder(images: Path, out: Path, max_keypoints: int = 4096) -> Path:
    """OpenCV SIFT of every image in ``images`` into ``out`` (names relative to the folder), on the CPU."""
    from posfeat.extraction import ExtractConfig, extract_dataset

    names = sorted(p.name for p in Path(images).iterdir())
    extract_dataset(
        "sift", images, names, out, config=ExtractConfig(max_keypoints=max_keypoints), device="cpu", progress=False
    )
    return out
