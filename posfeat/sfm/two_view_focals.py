"""Initial focal lengths from the verified two-view geometries, for photos without a focal prior.

Photos without EXIF get COLMAP's guess f = 1.2·max(w, h), often 0.6× to 2.3× off on internet photos.
:func:`estimate_focals` self-calibrates them from the verified two-view geometries. For a pair
of images with fundamental matrix F and intrinsics K₁, K₂ (principal point at the image centre,
square pixels), E = K₂ᵀ F K₁ is an essential matrix exactly when its two non-zero singular values
are equal. Each image's focal length is found by minimising, over its verified pairs, the
weighted and capped relative gap (σ₁ − σ₂)/(σ₁ + σ₂) (coordinate descent on a log grid). Two views
fix the *ratios* of the focal lengths well but not their common scale when the optical axes meet
(every capture centred on an object), so that scale comes from the cameras with a prior focal length
(EXIF, a benchmark's database) when there are any, else from COLMAP's guess (the geometric mean
of the factors f/max(w, h) is set to 1.2). The result only replaces the *initial* focal lengths;
the mapper's bundle adjustment still refines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pycolmap

#: search range of the focal factor f / max(w, h) before the scale is fixed
FACTOR_RANGE: tuple[float, float] = (0.05, 40.0)
#: a pair's cost is capped here so that a wrong F (a plane, a repeated structure) weighs like a poor fit
COST_CAP = 0.3
#: verified pairs an image needs before it gets a focal length of its own (else it keeps its current one)
MIN_PAIRS_PER_IMAGE = 2
#: the strongest verified pairs (most inliers) an image's own focal length is fitted to (bounds the work per image
#: in large exhaustive scenes; more pairs add little to a one-parameter fit)
MAX_PAIRS_PER_IMAGE = 50
#: sources of an initial focal length
FOCAL_SOURCES = ("prior", "two_view", "guess")


# ------------------------------------------------------------------------------------ the cost
def essential_gap(F_norm: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """(σ₁ − σ₂)/(σ₁ + σ₂) of E = diag(a₂, a₂, 1) F_norm diag(a₁, a₁, 1), broadcast over a₁, a₂.

    ``F_norm`` is a fundamental matrix in *normalised* image coordinates (centre at 0, unit max(w, h));
    a₁, a₂ are the focal factors f/max(w, h). 0 for a true essential matrix, up to 1.
    """
    a1, a2 = np.broadcast_arrays(np.asarray(a1, np.float64), np.asarray(a2, np.float64))
    d1 = np.stack([a1, a1, np.ones_like(a1)], -1)
    d2 = np.stack([a2, a2, np.ones_like(a2)], -1)
    E = d2[..., :, None] * F_norm * d1[..., None, :]
    s = np.linalg.svd(E, compute_uv=False)
    return (s[..., 0] - s[..., 1]) / np.maximum(s[..., 0] + s[..., 1], 1e-300)


def normalise_fundamental(F: np.ndarray, size1: tuple[int, int], size2: tuple[int, int]) -> np.ndarray:
    """F (COLMAP pixels, image 1 → 2) in coordinates centred on each image and scaled by its max(w, h)."""

    def T(size):
        w, h = size
        s = float(max(w, h))
        return np.array([[s, 0.0, w / 2.0], [0.0, s, h / 2.0], [0.0, 0.0, 1.0]])

    Fn = T(size2).T @ np.asarray(F, np.float64) @ T(size1)
    n = np.linalg.norm(Fn)
    return Fn / n if n > 0 else Fn


# ------------------------------------------------------------------------------------ the estimate
@dataclass
class FocalEstimate:
    """Initial focal lengths of a scene's cameras and where each came from."""

    focal: dict[int, float] = field(default_factory=dict)  # camera id → focal length (px)
    source: dict[int, str] = field(default_factory=dict)  # camera id → one of FOCAL_SOURCES
    scale: float | None = None  # factor applied to the two-view ratios (to the guess's geometric mean; 1 with priors)
    num_pairs: int = 0  # verified pairs with a fundamental matrix that were used

    def counts(self) -> dict[str, int]:
        """How many cameras got their focal length from each source."""
        return {s: sum(1 for v in self.source.values() if v == s) for s in FOCAL_SOURCES}


def _capped(gap: np.ndarray) -> np.ndarray:
    return np.minimum(gap, COST_CAP)


def solve_focal_factors(
    pairs: list[tuple[int, int, np.ndarray, float]],
    num: int,
    fixed: dict[int, float],
    guess: float = 1.2,
    grid_size: int = 481,
    sweeps: int = 4,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Focal factors f/max(w, h) of ``num`` cameras from pairs ``(i, j, F_norm, weight)``.

    Coordinate descent on a log grid: each camera with at least :data:`MIN_PAIRS_PER_IMAGE` pairs in
    turn takes the factor that minimises its pairs' capped gaps, the others held. The *ratios* of the
    focal lengths are what two views determine well; their common scale is not when the optical axes
    meet (every object-centred capture), so without priors the free factors are rescaled to the
    geometric mean ``guess``. ``fixed``: ``{camera index: factor}`` known beforehand (priors), which
    then carry the scale instead. Returns ``(factors, own, scale)``: ``own[k]`` is True where camera k
    got a factor of its own, ``scale`` the factor the estimate was multiplied by (None when nothing
    was estimated).
    """
    lo, hi = FACTOR_RANGE
    grid = np.geomspace(lo, hi, grid_size)
    factors = np.full(num, float(guess))
    for k, v in fixed.items():
        factors[k] = v
    own = np.zeros(num, bool)
    free = np.array([k not in fixed for k in range(num)])
    if not pairs:
        return factors, own, None
    I = np.array([p[0] for p in pairs])
    J = np.array([p[1] for p in pairs])
    F = np.stack([p[2] for p in pairs])
    W = np.array([p[3] for p in pairs])
    mine = {}  # free camera → (its pairs where it is first, where it is second), the strongest first, computed once
    for k in np.flatnonzero(free):
        idx = np.flatnonzero((I == k) | (J == k))
        if len(idx) >= MIN_PAIRS_PER_IMAGE:
            idx = idx[np.argsort(-W[idx], kind="stable")[:MAX_PAIRS_PER_IMAGE]]
            mine[k] = (idx[I[idx] == k], idx[J[idx] == k])
    for _ in range(sweeps):
        for k, (first, second) in mine.items():
            total = np.zeros(grid_size)
            if len(first):
                total += (W[first] * _capped(essential_gap(F[first], grid[:, None], factors[J[first]][None]))).sum(1)
            if len(second):
                total += (W[second] * _capped(essential_gap(F[second], factors[I[second]][None], grid[:, None]))).sum(1)
            factors[k] = float(grid[int(np.argmin(total))])
            own[k] = True
    if not own.any():
        return factors, own, None
    scale = 1.0
    if not fixed:
        scale = float(guess / np.exp(np.mean(np.log(factors[own]))))
        factors[own] *= scale
    return factors, own, scale


def camera_focals(db: pycolmap.Database) -> FocalEstimate:
    """The focal lengths the database's cameras have now: ``prior`` where flagged so, else ``guess``."""
    est = FocalEstimate()
    for cam in db.read_all_cameras():
        c = int(cam.camera_id)
        est.focal[c] = float(cam.mean_focal_length())
        est.source[c] = "prior" if cam.has_prior_focal_length else "guess"
    return est


def estimate_focals(db: pycolmap.Database, min_inliers: int = 15, guess: float = 1.2) -> FocalEstimate:
    """Initial focal lengths of every camera of ``db`` from its verified two-view geometries.

    Cameras with ``has_prior_focal_length`` keep theirs (``prior``); the others with at least
    :data:`MIN_PAIRS_PER_IMAGE` verified pairs (a fundamental matrix, ``min_inliers`` inliers) get a
    self-calibrated one (``two_view``, :func:`solve_focal_factors`; ``guess`` = COLMAP's factor sets
    the scale when no camera has a prior), the rest keep their current value (``guess``).
    Cameras must not be shared by images of different sizes (one camera per image, as here). When every
    camera has a prior (a benchmark's ``database.db``) nothing is read or fitted.
    """
    if "guess" not in camera_focals(db).source.values():
        return camera_focals(db)
    cams = {int(c.camera_id): c for c in db.read_all_cameras()}
    cam_of_image = {int(im.image_id): int(im.camera_id) for im in db.read_all_images()}
    ids = sorted(cams)
    index = {c: k for k, c in enumerate(ids)}
    size = {c: (int(cams[c].width), int(cams[c].height)) for c in ids}
    pairs = []
    pair_ids, geometries = db.read_two_view_geometries()
    for pid, tvg in zip(pair_ids, geometries):
        i1, i2 = (int(v) for v in pycolmap.pair_id_to_image_pair(pid))
        n = len(np.asarray(tvg.inlier_matches).reshape(-1, 2))
        F = np.asarray(tvg.F, np.float64)
        if n < min_inliers or not np.isfinite(F).all() or np.linalg.norm(F) == 0:
            continue
        c1, c2 = cam_of_image[i1], cam_of_image[i2]
        if c1 == c2 or (cams[c1].has_prior_focal_length and cams[c2].has_prior_focal_length):
            continue
        pairs.append((index[c1], index[c2], normalise_fundamental(F, size[c1], size[c2]), float(np.sqrt(n))))
    fixed = {index[c]: float(cams[c].mean_focal_length()) / max(size[c]) for c in ids if cams[c].has_prior_focal_length}
    factors, own, scale = solve_focal_factors(pairs, len(ids), fixed, guess)
    est = FocalEstimate(scale=scale, num_pairs=len(pairs))
    for c in ids:
        k = index[c]
        if k in fixed:
            est.focal[c], est.source[c] = float(cams[c].mean_focal_length()), "prior"
        elif own[k]:
            est.focal[c], est.source[c] = float(factors[k] * max(size[c])), "two_view"
        else:
            est.focal[c], est.source[c] = float(cams[c].mean_focal_length()), "guess"
    return est


def apply_focals(db: pycolmap.Database, est: FocalEstimate) -> int:
    """Write the estimated focal lengths into the database's cameras (priors untouched); returns how many."""
    n = 0
    for cam in db.read_all_cameras():
        c = int(cam.camera_id)
        if est.source.get(c) == "two_view":
            for idx in cam.focal_length_idxs():
                cam.params[idx] = est.focal[c]
            cam.params = np.asarray(cam.params)  # write back through the property
            db.update_camera(cam)
            n += 1
    return n


def drop_focal_priors(db: pycolmap.Database) -> int:
    """Mark every camera's focal length as a guess (an EXIF prior found wrong); returns how many were priors."""
    n = 0
    for cam in db.read_all_cameras():
        if cam.has_prior_focal_length:
            cam.has_prior_focal_length = False
            db.update_camera(cam)
            n += 1
    return n
