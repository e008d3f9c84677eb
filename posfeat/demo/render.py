"""A tiny exact renderer for piecewise-planar worlds (the demo world).

Every surface is a textured rectangle (:class:`Plane`). For a pinhole camera (:class:`Camera`, world→camera
``X_cam = R X_w + t``) the plane induces a homography from texture pixels to image pixels,
``H = K [R u | R v | R o + t]``, where ``o`` is the world point of texture pixel ``(0, 0)`` and ``u``, ``v``
are the world displacements of one texture pixel along x and y. Each plane is drawn with
``cv2.warpPerspective`` (which samples at integer pixel centres, our convention: the centre of the top-left
pixel is ``(0, 0)``) and composited with a per-pixel depth test. The third homogeneous coordinate of
``H^-1 (x, y, 1)`` is exactly the inverse depth ``1/z`` of the plane at that pixel, so one product gives
the texture coordinates, the visibility mask and the z-buffer value.

Minification is anti-aliased with trilinear mip-mapping (``cv2.pyrDown`` levels: level-``l`` pixel ``i``
sits at level-0 coordinate ``2^l i``, so the level homography is exact). Blurs are symmetric and never move
the geometry; the ground truth is exact up to OpenCV's 1/32-pixel interpolation grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from posfeat.datasets.camera import Camera

NEAR = 0.05  # metres; geometry closer than this to the camera centre is clipped


@dataclass
class Plane:
    """A textured rectangle: texture pixel ``(a, b)`` lies at ``origin + a * axis_u + b * axis_v``.

    The rectangle spans texture coordinates ``[0, w-1] x [0, h-1]`` (pixel centres). Seen from the side
    opposite to ``axis_u x axis_v`` the texture appears unmirrored (image x along ``axis_u``, image y along
    ``axis_v``); ``two_sided=False`` planes are culled when seen from the other side.
    """

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    texture: np.ndarray
    two_sided: bool = True
    name: str = ""
    sources: tuple[str, ...] = ()
    _pyramid: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.axis_u, self.axis_v)
        return n / np.linalg.norm(n)

    def corners(self) -> np.ndarray:
        """World coordinates of the 4 corner texel centres, ``(4, 3)``."""
        h, w = self.texture.shape[:2]
        ab = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
        return self.origin + ab[:, :1] * self.axis_u + ab[:, 1:] * self.axis_v

    def pyramid(self, max_levels: int = 8) -> list[np.ndarray]:
        """Mip-map levels of the texture (level 0 = the texture), built once."""
        if self._pyramid is None:
            levels = [self.texture]
            while len(levels) < max_levels and min(levels[-1].shape[:2]) >= 8:
                levels.append(cv2.pyrDown(levels[-1]))
            self._pyramid = levels
        return self._pyramid


def rect_plane(
    center: np.ndarray, dir_u: np.ndarray, dir_v: np.ndarray, size_u: float, size_v: float, texture: np.ndarray, **kw
) -> Plane:
    """A rectangle centred at ``center`` with edges along unit directions ``dir_u``, ``dir_v`` (metres).

    The texture is stretched over the rectangle (its pixel centres span the full extent).
    """
    h, w = texture.shape[:2]
    du = np.asarray(dir_u, float) / np.linalg.norm(dir_u)
    dv = np.asarray(dir_v, float) / np.linalg.norm(dir_v)
    axis_u = du * size_u / (w - 1)
    axis_v = dv * size_v / (h - 1)
    origin = np.asarray(center, float) - 0.5 * size_u * du - 0.5 * size_v * dv
    return Plane(origin, axis_u, axis_v, texture, **kw)


def look_at(center, target, roll_deg: float = 0.0, up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World→camera ``(R, t)`` of a camera at ``center`` looking at ``target`` (x right, y down, z forward).

    ``up`` is the world up direction; ``roll_deg`` rotates the image about the optical axis.
    """
    c = np.asarray(center, float)
    f = np.asarray(target, float) - c
    f /= np.linalg.norm(f)
    right = np.cross(f, np.asarray(up, float))
    if np.linalg.norm(right) < 1e-6:  # looking straight up/down: any right vector
        right = np.cross(f, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    R = np.stack([right, down, f])
    a = np.radians(roll_deg)
    Rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    R = Rz @ R
    return R, -R @ c


def intrinsics(f: float, width: int, height: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """``K`` with focal ``f`` and the principal point at the image centre ``((W-1)/2, (H-1)/2)`` + offset."""
    return np.array([[f, 0.0, (width - 1) / 2.0 + dx], [0.0, f, (height - 1) / 2.0 + dy], [0.0, 0.0, 1.0]])


def plane_homography(plane: Plane, cam: Camera) -> np.ndarray:
    """Texture pixel → image pixel homography ``K [R u | R v | R o + t]`` (not rescaled: see module doc)."""
    M = np.stack([cam.R @ plane.axis_u, cam.R @ plane.axis_v, cam.R @ plane.origin + cam.t], axis=1)
    return cam.K @ M


def _clip_polygon_near(pts_cam: np.ndarray, near: float) -> np.ndarray:
    """Clip a convex polygon (camera coordinates, ``(N, 3)``) to ``z >= near`` (Sutherland–Hodgman)."""
    out = []
    n = len(pts_cam)
    for i in range(n):
        p, q = pts_cam[i], pts_cam[(i + 1) % n]
        pin, qin = p[2] >= near, q[2] >= near
        if pin:
            out.append(p)
        if pin != qin:
            s = (near - p[2]) / (q[2] - p[2])
            out.append(p + s * (q - p))
    return np.array(out).reshape(-1, 3)


def _screen_roi(plane: Plane, cam: Camera) -> tuple[int, int, int, int] | None:
    """Integer pixel box ``(x0, y0, x1, y1)`` (inclusive-exclusive) that the plane may cover, or None."""
    pts = plane.corners() @ cam.R.T + cam.t
    pts = _clip_polygon_near(pts, NEAR)
    if len(pts) < 3:
        return None
    uv = pts @ cam.K.T
    uv = uv[:, :2] / uv[:, 2:3]
    x0 = max(int(np.floor(uv[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(uv[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(uv[:, 0].max())) + 2, cam.width)
    y1 = min(int(np.ceil(uv[:, 1].max())) + 2, cam.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _texture_coords(plane: Plane, Hinv: np.ndarray, roi: tuple[int, int, int, int]):
    """Texture coordinates ``(a, b)`` and inverse depth ``w`` of the pixels of ``roi`` (image → plane by
    ``Hinv``), and which of them see the texture in front of the near plane."""
    x0, y0, x1, y1 = roi
    xs = np.arange(x0, x1, dtype=np.float64)[None, :]
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]
    u = Hinv[0, 0] * xs + Hinv[0, 1] * ys + Hinv[0, 2]
    v = Hinv[1, 0] * xs + Hinv[1, 1] * ys + Hinv[1, 2]
    w = Hinv[2, 0] * xs + Hinv[2, 1] * ys + Hinv[2, 2]  # = 1 / depth
    th, tw = plane.texture.shape[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = u / w
        b = v / w
        valid = (w > 0) & (w <= 1.0 / NEAR) & (a >= 0) & (a <= tw - 1) & (b >= 0) & (b <= th - 1)
    return a, b, w, valid


def _sample_mipmapped(
    plane: Plane,
    Hinv: np.ndarray,
    roi: tuple[int, int, int, int],
    a: np.ndarray,
    b: np.ndarray,
    w: np.ndarray,
    valid: np.ndarray,
    max_levels: int,
) -> np.ndarray:
    """The texture seen by the pixels of ``roi``: trilinear over the mip level of each pixel's footprint."""
    x0, y0, x1, y1 = roi
    # texture footprint of one image pixel → mip level (trilinear weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        dax = (Hinv[0, 0] - a * Hinv[2, 0]) / w
        dbx = (Hinv[1, 0] - b * Hinv[2, 0]) / w
        day = (Hinv[0, 1] - a * Hinv[2, 1]) / w
        dby = (Hinv[1, 1] - b * Hinv[2, 1]) / w
        rho2 = np.maximum(dax * dax + dbx * dbx, day * day + dby * dby)
    pyr = plane.pyramid(max_levels)
    lam = np.where(valid, 0.5 * np.log2(np.maximum(rho2, 1e-12)), 0.0)
    lam = np.clip(lam, 0.0, len(pyr) - 1.0)
    lo = int(np.floor(lam[valid].min()))
    hi = int(np.ceil(lam[valid].max()))
    acc = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    for level in range(lo, hi + 1):
        wl = np.clip(1.0 - np.abs(lam - level), 0.0, 1.0) * valid
        rows = np.flatnonzero(wl.any(axis=1))
        cols = np.flatnonzero(wl.any(axis=0))
        if len(rows) == 0:
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        s = 0.5**level
        # ROI pixel (i, j) → image pixel (x0 + c0 + i, y0 + r0 + j) → level-l texture coordinates
        M = np.diag([s, s, 1.0]) @ Hinv @ np.array([[1.0, 0, x0 + c0], [0, 1.0, y0 + r0], [0, 0, 1.0]])
        warped = cv2.warpPerspective(
            pyr[level],
            M,
            (int(c1 - c0), int(r1 - r0)),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        acc[r0:r1, c0:c1] += warped.astype(np.float32) * wl[r0:r1, c0:c1, None].astype(np.float32)
    return acc


def render(planes: list[Plane], cam: Camera, max_levels: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``planes`` seen by ``cam``.

    Returns:
        ``image`` (H, W, 3) float32 RGB in [0, 255], ``inv_depth`` (H, W) float32 (``1/z``; 0 where nothing
        is seen) and ``plane_id`` (H, W) int32 (index into ``planes``; -1 where nothing is seen).
    """
    W, H = cam.width, cam.height
    image = np.zeros((H, W, 3), np.float32)
    zbuf = np.zeros((H, W), np.float64)
    ids = np.full((H, W), -1, np.int32)
    C = cam.center
    for pid, plane in enumerate(planes):
        if not plane.two_sided and float(np.dot(C - plane.origin, np.cross(plane.axis_u, plane.axis_v))) >= 0:
            continue
        roi = _screen_roi(plane, cam)
        if roi is None:
            continue
        x0, y0, x1, y1 = roi
        Hinv = np.linalg.inv(plane_homography(plane, cam))
        a, b, w, valid = _texture_coords(plane, Hinv, roi)
        valid &= w > zbuf[y0:y1, x0:x1]
        if not valid.any():
            continue
        acc = _sample_mipmapped(plane, Hinv, roi, a, b, w, valid, max_levels)
        img_roi = image[y0:y1, x0:x1]
        img_roi[valid] = acc[valid]
        zbuf[y0:y1, x0:x1][valid] = w[valid]
        ids[y0:y1, x0:x1][valid] = pid
    return image, zbuf.astype(np.float32), ids


def backproject(cam: Camera, xy: np.ndarray, inv_depth: np.ndarray) -> np.ndarray:
    """World points ``(N, 3)`` of pixels ``xy`` ``(N, 2)`` with inverse depths ``(N,)``."""
    h = np.concatenate([np.asarray(xy, float), np.ones((len(xy), 1))], 1)
    X_cam = (h @ np.linalg.inv(cam.K).T) / np.asarray(inv_depth, float)[:, None]
    return (X_cam - cam.t) @ cam.R


def project(cam: Camera, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(N, 2)`` and depths ``(N,)`` of world points ``X`` ``(N, 3)``."""
    Xc = np.asarray(X, float) @ cam.R.T + cam.t
    uv = Xc @ cam.K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return uv[:, :2] / uv[:, 2:3], Xc[:, 2]


def visible_in(
    cam: Camera, inv_depth: np.ndarray, X: np.ndarray, rel_tol: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Which world points ``X`` are seen (not occluded, inside the image) by ``cam`` with z-buffer ``inv_depth``.

    Returns the boolean mask and the projected pixels. A point is seen when its depth agrees with the
    z-buffer at the nearest pixel within ``rel_tol`` (relative).
    """
    xy, z = project(cam, X)
    H, W = inv_depth.shape
    ok = (z > NEAR) & (xy[:, 0] >= 0) & (xy[:, 0] <= W - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= H - 1)
    ok &= np.isfinite(xy).all(1)
    xi = np.clip(np.round(np.nan_to_num(xy[:, 0])).astype(int), 0, W - 1)
    yi = np.clip(np.round(np.nan_to_num(xy[:, 1])).astype(int), 0, H - 1)
    zb = inv_depth[yi, xi].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok &= (zb > 0) & (np.abs(1.0 / zb - z) <= rel_tol * z)
    return ok, xy


def covisibility(cam_a: Camera, inv_a: np.ndarray, cam_b: Camera, inv_b: np.ndarray, stride: int = 16) -> float:
    """Fraction of a grid of pixels of image A whose surface point is seen (unoccluded) in image B."""
    H, W = inv_a.shape
    ys, xs = np.mgrid[stride // 2 : H : stride, stride // 2 : W : stride]
    xy = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    d = inv_a[ys.ravel(), xs.ravel()]
    keep = d > 0
    if not keep.any():
        return 0.0
    X = backproject(cam_a, xy[keep], d[keep])
    ok, _ = visible_in(cam_b, inv_b, X)
    return float(ok.sum()) / float(len(xy))
