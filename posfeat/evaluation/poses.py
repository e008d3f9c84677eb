"""Camera-pose accuracy against ground truth: the ETH benchmark's pose metrics and Aachen's pose error.

* :func:`pose_accuracy` of a model (docs/method.md#eth-local-feature-benchmark): median rotation and
  camera-centre errors of the registered images after a similarity alignment (:func:`align_similarity`,
  :func:`absolute_pose_errors`), and the AUC (:func:`pose_auc`) of the relative-pose error of every image
  pair at 5/10/20° (:func:`relative_pose_errors`), an image that is not registered counting as an
  infinite error;
* :func:`pose_error` of one world→camera pose (Aachen's localization recall): camera-centre distance and
  rotation angle.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pycolmap

from posfeat.datasets.camera import Camera, qvec_to_rotmat
from posfeat.geometry import rotation_angle_deg
from posfeat.sfm import colmap

#: the relative-pose AUC thresholds (degrees)
AUC_THRESHOLDS: tuple[float, ...] = (5.0, 10.0, 20.0)
#: images whose model-to-GT rotation offset is within this angle (degrees) of the majority's fix the alignment
ALIGN_INLIER_DEG = 10.0


def pose_auc(errors: np.ndarray, thresholds: Sequence[float] = AUC_THRESHOLDS) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, divided by it (SuperGlue's pose AUC).

    ``errors`` may contain ``inf`` (failures); an empty array gives zeros.
    """
    errors = np.sort(np.asarray(errors, np.float64).reshape(-1))
    if errors.size == 0:
        return [0.0 for _ in thresholds]
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    out = []
    for t in thresholds:
        last = np.searchsorted(errors, t)
        e = np.concatenate([errors[:last], [t]])
        r = np.concatenate([recall[:last], [recall[last - 1]]])
        out.append(float(np.trapezoid(r, x=e) / t))
    return out


def _angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) between two vectors; ``inf`` when either is (nearly) zero."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return float("inf")
    return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def relative_pose_errors(est: dict[str, tuple[np.ndarray, np.ndarray]], gt: dict[str, Camera]) -> np.ndarray:
    """Relative-pose error (degrees) of every ground-truth pair: max(rotation, translation direction).

    ``est``: ``{name: (R, t)}`` world→camera of the registered images. A pair with an unregistered image
    gets ``inf``. The relative pose 1→2 is ``R2 R1ᵀ, t2 − R2 R1ᵀ t1`` (scale-free: only its direction).
    """
    errs = []
    for a, b in itertools.combinations(sorted(gt), 2):
        if a not in est or b not in est:
            errs.append(np.inf)
            continue
        ga, gb = gt[a], gt[b]
        R_gt = gb.R @ ga.R.T
        t_gt = gb.t - R_gt @ ga.t
        (Ra, ta), (Rb, tb) = est[a], est[b]
        R_est = Rb @ Ra.T
        t_est = tb - R_est @ ta
        e_r = rotation_angle_deg(R_est.T @ R_gt)
        e_t = _angle_between_deg(t_est, t_gt)
        errs.append(max(e_r, e_t))
    return np.asarray(errs, np.float64)


def _consensus_rotations(offsets: np.ndarray, inlier_deg: float) -> np.ndarray:
    """Indices of the rotation offsets within ``inlier_deg`` of their geodesic medoid (the offset with the
    smallest summed angle to all others): the images whose orientation agrees with the majority."""
    rel = np.einsum("iab,jac->ijbc", offsets, offsets)  # R_iᵀ R_j
    cos = (np.einsum("ijbb->ij", rel) - 1.0) / 2.0
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    medoid = int(np.argmin(ang.sum(1)))
    return np.flatnonzero(ang[medoid] <= inlier_deg)


def _median_scale(y: np.ndarray, c: np.ndarray) -> float:
    """Median ratio of ground-truth to model distances over all pairs of centres (0 when all coincide)."""
    i, j = np.triu_indices(len(y), 1)
    d_est = np.linalg.norm(y[i] - y[j], axis=1)
    ok = d_est > 1e-12
    return float(np.median(np.linalg.norm(c[i] - c[j], axis=1)[ok] / d_est[ok])) if ok.any() else 0.0


def align_similarity(
    est: dict[str, tuple[np.ndarray, np.ndarray]], gt: dict[str, Camera], inlier_deg: float = ALIGN_INLIER_DEG
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Similarity ``X_gt ≈ s·R·X_est + t`` between a model's frame and the ground truth's.

    The rotation is the chordal L2 mean of the per-image offsets ``R_gt,iᵀ R_est,i`` (projected onto
    SO(3) by SVD) over the images that agree with the majority: the offsets within ``inlier_deg`` of
    their geodesic medoid. Scale and translation are then the least-squares fit of those images'
    camera centres; if that fit is not positive (misplaced cameras can flip it), the scale is the median
    ratio of pairwise centre distances and the translation the median offset. A few wrong cameras thus
    get large errors instead of leaving the model without any. Centre-only Umeyama
    (``pycolmap.estimate_sim3d``) leaves the rotation about the line of the cameras unconstrained when
    the centres are nearly collinear (an arc of cameras, a street), which shows up as degrees of
    spurious rotation error; the orientations fix it. Needs ≥ 2 common images with distinct centres;
    ``None`` otherwise.
    """
    names = sorted(n for n in est if n in gt)
    if len(names) < 2:
        return None
    offsets = np.stack([gt[n].R.T @ est[n][0] for n in names])
    keep = _consensus_rotations(offsets, inlier_deg)
    U, _, Vt = np.linalg.svd(offsets[keep].sum(0))
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    y = np.stack([R @ (-est[n][0].T @ est[n][1]) for n in names])[keep]
    c = np.stack([gt[n].center for n in names])[keep]
    yc, cc = y - y.mean(0), c - c.mean(0)
    denom = float((yc * yc).sum())
    if denom < 1e-12:
        return None
    s = float((yc * cc).sum() / denom)
    if s > 0:
        return s, R, c.mean(0) - s * y.mean(0)
    s = _median_scale(y, c)
    if s <= 0:
        return None
    return s, R, np.median(c - s * y, axis=0)


def absolute_pose_errors(
    est: dict[str, tuple[np.ndarray, np.ndarray]], gt: dict[str, Camera]
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Rotation (deg) and centre errors (GT units) of the registered GT images after :func:`align_similarity`.

    Every common image gets an error, the ones left out of the alignment's consensus too. Returns
    ``(rot_errors, center_errors, scale)``; empty arrays and ``None`` when fewer than 3 images are common
    (two cameras fit a similarity exactly) or the alignment is degenerate.
    """
    names = sorted(n for n in est if n in gt)
    sim = align_similarity(est, gt) if len(names) >= 3 else None
    if sim is None:
        return np.zeros(0), np.zeros(0), None
    s, R_s, t_s = sim
    rot, cen = [], []
    for n in names:
        R_e, t_e = est[n]
        R_aligned = R_e @ R_s.T  # cam_from_gt_world = cam_from_world ∘ sim⁻¹
        rot.append(rotation_angle_deg(R_aligned @ gt[n].R.T))
        cen.append(float(np.linalg.norm(s * R_s @ (-R_e.T @ t_e) + t_s - gt[n].center)))
    return np.asarray(rot), np.asarray(cen), s


def pose_accuracy(rec: pycolmap.Reconstruction | None, gt: dict[str, Camera]) -> dict[str, float | int | None]:
    """Pose metrics of a model against ground truth (names: bare image file names)."""
    est: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if rec is not None:
        for name, pose in colmap.registered_poses(rec).items():
            est[name] = colmap.rigid_to_Rt(pose)
    rot, cen, _ = absolute_pose_errors(est, gt)
    rel = relative_pose_errors(est, gt)
    out: dict[str, float | int | None] = {
        "gt_images": len(gt),
        "gt_images_registered": int(sum(1 for n in est if n in gt)),
        "median_rotation_error_deg": float(np.median(rot)) if rot.size else None,
        "median_center_error": float(np.median(cen)) if cen.size else None,
    }
    for t, auc in zip(AUC_THRESHOLDS, pose_auc(rel)):
        out[f"pose_auc@{t:g}"] = auc
    ferr = focal_errors(rec, gt) if rec is not None else np.zeros(0)
    out["median_focal_error"] = float(np.median(ferr)) if ferr.size else None
    out["max_focal_error"] = float(np.max(ferr)) if ferr.size else None
    return out


def focal_errors(rec: pycolmap.Reconstruction, gt: dict[str, Camera]) -> np.ndarray:
    """|f / f_gt − 1| of the registered images with ground truth (f: the mean of fx and fy)."""
    out = []
    for im in rec.images.values():
        if im.has_pose and im.name in gt:
            K = gt[im.name].K
            out.append(abs(rec.cameras[im.camera_id].mean_focal_length() / (0.5 * (K[0, 0] + K[1, 1])) - 1.0))
    return np.asarray(out, np.float64)


def pose_error(
    qvec_est: Sequence[float], tvec_est: Sequence[float], qvec_gt: Sequence[float], tvec_gt: Sequence[float]
) -> tuple[float, float]:
    """(position error in model units, rotation error in degrees) of a world→camera pose.

    The position error is the distance between the camera centres ``−Rᵀt``; the rotation error is the
    angle of ``R_est·R_gtᵀ``.
    """
    R_est, R_gt = qvec_to_rotmat(np.asarray(qvec_est, float)), qvec_to_rotmat(np.asarray(qvec_gt, float))
    c_est = -R_est.T @ np.asarray(tvec_est, float).reshape(3)
    c_gt = -R_gt.T @ np.asarray(tvec_gt, float).reshape(3)
    return float(np.linalg.norm(c_est - c_gt)), float(rotation_angle_deg(R_est @ R_gt.T))


__all__ = [
    "AUC_THRESHOLDS",
    "ALIGN_INLIER_DEG",
    "pose_auc",
    "relative_pose_errors",
    "align_similarity",
    "absolute_pose_errors",
    "pose_accuracy",
    "focal_errors",
    "pose_error",
]
