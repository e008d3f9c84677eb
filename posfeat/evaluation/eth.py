"""ETH local feature benchmark with pycolmap: match, verify, reconstruct, measure
(docs/method.md#eth-local-feature-benchmark).

Per scene (``<root>/<Scene>/images/*``):

1. the COLMAP database in the work folder:

   * the scene's own ``database.db`` when the release has one (as the ETH kit and the official PoSFeat
     script use it): a copy, keeping its cameras (and their prior focal lengths), image names and ids,
     with its keypoint/descriptor/match/geometry tables emptied (:func:`posfeat.colmap.copy_database_without_features`);
   * otherwise one camera per image as COLMAP's image reader makes it (``pycolmap.infer_camera_from_image``):
     the focal length from the EXIF when there is one (a *prior* focal length), else COLMAP's guess
     f = 1.2·max(w, h) without a prior; ``SIMPLE_RADIAL``, principal point at the centre;

   then the keypoints from the feature file (+0.5 px, COLMAP's origin);
2. the image pairs (the protocol used is reported per scene under ``protocol``): the scene's own pair
   list when it has one (``pairs.txt``, ``image_pairs.txt`` or ``match_list.txt``, or ``pairs_file``);
   else exhaustive (i < j) up to ``max_exhaustive_images`` images (the benchmark matches exhaustively up
   to Tower of London's 1576); else **retrieval pairs**: each image with its ``retrieval_neighbors``
   nearest neighbours by a bag-of-visual-words TF-IDF descriptor built from the scene's own local
   descriptors (:mod:`posfeat.retrieval`), the stand-in for COLMAP's vocabulary-tree matcher whose
   pre-trained tree cannot be downloaded here;
3. matching: mutual nearest neighbour, optionally with a ratio test on both sides
   (:func:`posfeat.matching.match_descriptors`; the official PoSFeat script uses ratio 0.75);
4. two-view geometric verification (``pycolmap.verify_matches``, COLMAP's ``matches_importer``) with
   hloc's RANSAC settings (20000 trials, minimum inlier ratio 0.1); why pairs fail is logged and
   reported (``verification``: pairs per configuration type, inlier ratios);
5. ``pycolmap.incremental_mapping`` (COLMAP's ``mapper``); the largest model (most registered images)
   is measured: registered images, sparse points, observations, mean track length, observations per
   image, mean reprojection error — the statistics of ``colmap model_analyzer``;
6. where ``gt_cameras.txt`` exists (:func:`posfeat.data.eth.read_gt_cameras`): camera-pose accuracy —
   median rotation and camera-centre errors of the registered images after a similarity alignment
   (:func:`align_similarity`: rotation from the camera orientations that agree with the majority, scale
   and translation from their centres — centre-only Umeyama is ill-conditioned for nearly collinear
   cameras, and a few misplaced cameras must not void the alignment), and the AUC of the
   relative-pose error (max of rotation and translation-direction angle) over all image pairs at
   5/10/20°, an image that is not registered counting as an infinite error.

Why the defaults are what they are (measured on an internet-style scene built from the Strecha castle
images: 10 crops of mixed size, principal point and focal length; SIFT, exhaustive pairs): the two-sided
ratio test at 0.75 keeps 1308 verified inliers in 21 of 45 pairs against 4723 in 45 pairs for plain
mutual NN (3.6× fewer; e.g. 38 raw / 29 verified against 553 / 108 on a wide-baseline pair), and the
mapper then registers 3 of 10 images against 10 of 10. Without the EXIF focal prior the guessed
cameras register 8 (or 5 + 10 in two models) of 10 on a zoomed variant, with it 10 of 10. hloc's RANSAC
settings add about 1 % of inliers. So the default matcher is mutual NN (hloc's NN-mutual, and the Aachen
protocol's), the ratio test is a setting, and EXIF priors are read.

Features may be named relative to the ETH root (``<Scene>/images/x.jpg``), the scene (``images/x.jpg``)
or the image folder (``x.jpg``) — whatever folder was given to ``extract --images``
(:func:`posfeat.feature_names.resolve_feature_names`).

A scene that does not reconstruct (no matches, no verified pair, no initial pair) gives zero statistics
and a message, never an exception; the work folder of an earlier run is replaced.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pycolmap

from posfeat import colmap, reconstruction
from posfeat.data.eth import list_scene_images, list_scenes, read_gt_cameras
from posfeat.data.megadepth import Camera
from posfeat.evaluation import sfm
from posfeat.feature_names import resolve_feature_names
from posfeat.geometry import rotation_angle_deg
from posfeat.io import DataError, FeatureReader, feature_method_name
from posfeat.io import fresh_workdir as io_fresh_workdir
from posfeat.utils import ParamError, announce, config_from_dict, get_logger, resolve_device

log = get_logger(__name__)

#: the relative-pose AUC thresholds (degrees)
AUC_THRESHOLDS: tuple[float, ...] = (5.0, 10.0, 20.0)
#: images whose model-to-GT rotation offset is within this angle (degrees) of the majority's fix the alignment
ALIGN_INLIER_DEG = 10.0
#: file that marks a folder as an ETH work folder (the next run may delete it)
WORK_MARKER = ".posfeat-eth-work"


@dataclass
class ETHConfig:
    """Settings of the ETH pipeline (params.yaml ``eval.eth`` plus ``seed``)."""

    ratio: float | None = None  # Lowe ratio on descriptor distances (both directions); None: off (mutual NN, as hloc)
    mutual: bool = True  # mutual nearest neighbour
    max_exhaustive_images: int | None = 1600  # exhaustive pairs up to this many images (None: always), else retrieval
    retrieval_neighbors: int = 50  # retrieval pairs: each image with its k nearest neighbours
    retrieval_words: int = 1024  # visual words of the bag-of-words retrieval descriptor
    pairs_file: str | None = None  # pair list to use (relative: to the scene folder); None: the scene's own if any
    use_scene_database: bool = True  # use <Scene>/database.db (cameras, names, ids) when present
    use_exif: bool = True  # without a database: focal prior from EXIF (COLMAP's image reader), else the guess
    camera_model: str = "SIMPLE_RADIAL"  # model of the cameras made without a database (one per image)
    focal_factor: float = 1.2  # guessed focal = factor · max(w, h) (COLMAP's default without EXIF)
    verification_max_error: float = 4.0  # px, two-view RANSAC (COLMAP default)
    verification_min_inliers: int = 15  # verified pair threshold (COLMAP default)
    verification_max_num_trials: int = 20000  # RANSAC trial cap (hloc; COLMAP default 10000)
    verification_min_inlier_ratio: float = 0.1  # inlier ratio RANSAC plans for (hloc; COLMAP default 0.25)
    min_num_matches: int = 15  # mapper: pairs with fewer verified matches are ignored (COLMAP default)
    focal_init: str = "two_view"  # initial focal of cameras without a prior: two_view (self-calibrated) | guess
    mapping_attempts: int = 3  # mapper runs (seeds seed, seed+1, …) while the largest model misses images
    num_threads: int = -1  # COLMAP threads (-1: all cores; mapping is then not repeatable under CPU load, 1 is)
    seed: int = 0  # RANSAC, retrieval vocabulary and mapper seed

    def __post_init__(self) -> None:
        if self.focal_init not in ("two_view", "guess"):
            raise ParamError(f"eval.eth.focal_init = {self.focal_init!r}: expected two_view or guess")
        if int(self.mapping_attempts) < 1:
            raise ParamError(f"eval.eth.mapping_attempts = {self.mapping_attempts!r}: expected an int >= 1")

    @classmethod
    def from_dict(cls, d: dict | None) -> "ETHConfig":
        """From a params mapping; unknown keys are an error naming them."""
        return config_from_dict(cls, d, "eval.eth")

    def matcher_name(self) -> str:
        m = "mutual NN" if self.mutual else "NN"
        return m + (f" + ratio {self.ratio:g}" if self.ratio is not None else "")


@dataclass
class SceneResult:
    """What :func:`evaluate_scene` returns: statistics, timings and a message."""

    scene: str
    stats: dict[str, float | int | None]
    timings: dict[str, float] = field(default_factory=dict)
    message: str = "ok"
    model_path: str | None = None

    def to_dict(self) -> dict:
        return {
            "scene": self.scene,
            **self.stats,
            "timings_s": self.timings,
            "message": self.message,
            "model": self.model_path,
        }


# ------------------------------------------------------------------------------------ pairs
#: pair lists a scene may bring (names relative to ``images/``, one ``nameA nameB`` per line)
PAIR_LIST_NAMES: tuple[str, ...] = ("pairs.txt", "image_pairs.txt", "match_list.txt")
#: the scene's COLMAP database, when the release has one
SCENE_DATABASE = "database.db"


def exhaustive_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """All pairs ``(names[i], names[j])``, i < j."""
    return list(itertools.combinations(names, 2))


def read_pair_list(path: str | os.PathLike, names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of a pair list: ``nameA nameB`` per line (``#`` comments, blank lines skipped).

    Names are relative to the scene's ``images/`` folder (COLMAP's match list); an ``images/`` prefix
    is accepted. A line without two names, or naming an image that is not in ``names``, is an error
    naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pair list not found")
    known = set(names)
    pairs = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"{path}:{lineno}: expected 'nameA nameB', found {line!r}")
        a, b = (p[len("images/") :] if p.startswith("images/") and p not in known else p for p in parts[:2])
        for n in (a, b):
            if n not in known:
                raise DataError(f"{path}:{lineno}: expected an image of the scene, found unknown {n!r}")
        pairs.append((a, b))
    if not pairs:
        raise DataError(f"{path}: expected at least one pair 'nameA nameB', found none")
    return pairs


def find_pair_list(scene_dir: Path, pairs_file: str | None) -> Path | None:
    """The pair list to use: ``pairs_file`` (relative to the scene folder) or the scene's own, else None."""
    if pairs_file:
        p = Path(pairs_file)
        return p if p.is_absolute() else scene_dir / p
    for n in PAIR_LIST_NAMES:
        if (scene_dir / n).is_file():
            return scene_dir / n
    return None


def select_pairs(
    scene_dir: Path, names: Sequence[str], cfg: "ETHConfig", get_descriptors=None, device: str = "cpu"
) -> tuple[list[tuple[str, str]], dict]:
    """The scene's pairs under the benchmark's protocol, and a description of the protocol used.

    Pair list if the scene has one (or ``cfg.pairs_file``); exhaustive up to ``cfg.max_exhaustive_images``
    images; otherwise retrieval pairs (:mod:`posfeat.retrieval`, needs ``get_descriptors(name)``).
    """
    listed = find_pair_list(scene_dir, cfg.pairs_file)
    if listed is not None:
        return read_pair_list(listed, names), {"pairs": "pair_list", "pairs_file": str(listed)}
    if cfg.max_exhaustive_images is None or cfg.max_exhaustive_images <= 0 or len(names) <= cfg.max_exhaustive_images:
        return exhaustive_pairs(names), {"pairs": "exhaustive"}
    from posfeat.retrieval import bow_descriptors, nearest_neighbour_pairs

    if get_descriptors is None:
        raise ValueError("retrieval pairs need the descriptors")
    log.info(
        "%d images > max_exhaustive_images=%d: retrieval pairs (bag of words, %d words, k=%d)",
        len(names),
        cfg.max_exhaustive_images,
        cfg.retrieval_words,
        cfg.retrieval_neighbors,
    )
    g = bow_descriptors(names, get_descriptors, cfg.retrieval_words, seed=cfg.seed, device=device)
    pairs = nearest_neighbour_pairs(names, g, cfg.retrieval_neighbors)
    return pairs, {
        "pairs": "retrieval",
        "retrieval": "bag-of-words TF-IDF (stand-in for COLMAP's vocabulary tree)",
        "retrieval_neighbors": int(cfg.retrieval_neighbors),
        "retrieval_words": int(cfg.retrieval_words),
    }


# ------------------------------------------------------------------------------------ pose accuracy
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
    return out


# ------------------------------------------------------------------------------------ work folder
def fresh_workdir(path: str | os.PathLike) -> Path:
    """Empty work folder ``path`` (:func:`posfeat.io.fresh_workdir`); a foreign non-empty folder is refused."""
    return io_fresh_workdir(path, WORK_MARKER, "posfeat.evaluation.eth")


def resolve_feature_keys(features: FeatureReader, scene: str, names: Sequence[str]) -> dict[str, str]:
    """HDF5 group of every scene image, whatever folder the features were extracted from.

    Args:
        names: image names relative to the scene folder (``images/<file>``).
    Returns:
        ``{images/<file>: group name}``: ``<Scene>/images/<file>`` (extracted from the ETH root),
        ``images/<file>`` (the scene) or ``<file>`` (the image folder), or those below a common prefix;
        an image without features is a :class:`DataError` naming the file and the image.
    """
    expected = [f"{scene}/{n}" for n in names]
    found = resolve_feature_names(
        features.names(),
        expected,
        str(features.path),
        f"images of scene {scene}",
        "(extract every image of the scene: python -m posfeat extract --images SCENE)",
    )
    return {n: found[e] for n, e in zip(names, expected)}


def _cameras_from_database(
    db: pycolmap.Database, names: Sequence[str], sizes: dict[str, tuple[int, int]], db_file: Path
) -> dict[str, int]:
    """``{name: image id}`` of the database's images; their cameras must have the features' image sizes."""
    cams = {int(c.camera_id): c for c in db.read_all_cameras()}
    ids: dict[str, int] = {}
    for im in db.read_all_images():
        if im.name not in sizes:
            continue
        cam = cams.get(int(im.camera_id))
        if cam is None:
            raise DataError(
                f"{db_file}: image {im.name!r} refers to camera {im.camera_id}, which is not in the database"
            )
        if (int(cam.width), int(cam.height)) != sizes[im.name]:
            raise DataError(
                f"{db_file}: camera {cam.camera_id} of image {im.name!r} is {cam.width}×{cam.height}, "
                f"expected the features' image size {sizes[im.name][0]}×{sizes[im.name][1]}"
            )
        ids[im.name] = int(im.image_id)
    return ids


def _camera_for_image(path: Path, size: tuple[int, int], cfg: "ETHConfig") -> tuple[pycolmap.Camera, str]:
    """The camera COLMAP's image reader makes for ``path`` (EXIF focal prior) or the guess; and its source."""
    w, h = size
    if cfg.use_exif and path.is_file():
        opts = pycolmap.ImageReaderOptions()
        opts.camera_model = cfg.camera_model
        opts.default_focal_length_factor = float(cfg.focal_factor)
        try:
            with colmap.colmap_log_level(False):
                cam = pycolmap.infer_camera_from_image(str(path), opts)
        except Exception as e:  # an image format COLMAP's reader does not know: the guess
            log.debug("%s: no camera from COLMAP's image reader (%s); guessing", path, e)
            cam = None
        if cam is not None and cam.has_prior_focal_length:
            if (int(cam.width), int(cam.height)) != (w, h):
                raise DataError(f"{path}: image is {cam.width}×{cam.height}, expected the features' image size {w}×{h}")
            return cam, "exif"
    return colmap.guess_camera(w, h, cfg.camera_model, cfg.focal_factor), "guess"


# ------------------------------------------------------------------------------------ the pipeline
def _zero_stats(num_images: int, gt: dict | None) -> dict:
    stats = {
        "num_images": num_images,
        "num_pairs": 0,
        "num_matched_pairs": 0,
        "num_matches": 0,
        "num_inlier_pairs": 0,
        "num_inlier_matches": 0,
        "num_models": 0,
        **colmap.reconstruction_stats(None),
    }
    if gt is not None:
        stats.update(pose_accuracy(None, gt))
    return stats


def evaluate_scene(
    scene_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    workdir: str | os.PathLike,
    config: ETHConfig | None = None,
    device: str = "auto",
    progress: bool = True,
) -> SceneResult:
    """Reconstruct one ETH scene from the features of ``features_path`` and measure it.

    Args:
        scene_dir: ``<root>/<Scene>`` with ``images/`` (optionally ``database.db``, a pair list,
            ``gt_cameras.txt``).
        features_path: hloc-layout features named ``<Scene>/images/<file>``, ``images/<file>`` or ``<file>``.
        workdir: database, pair list and models go here (an earlier run's folder is replaced).
        config: pipeline settings.
        device: where descriptors are matched (``auto`` | ``cpu`` | ``cuda``).
        progress: tqdm bar while matching.

    Returns:
        statistics (matching, verification and why pairs failed it, model, pose accuracy where GT
        exists, the protocol used), the seconds of each phase (``import``, ``pairs``, ``matching``,
        ``verification``, ``mapping``), a message, the model's folder.
    """
    cfg = config or ETHConfig()
    scene_dir = Path(scene_dir)
    scene = scene_dir.name
    names = list_scene_images(scene_dir)  # images/<file>
    gt = read_gt_cameras(scene_dir)
    dev = resolve_device(device)
    work = fresh_workdir(workdir)
    db_path = work / "database.db"
    timer = sfm.PhaseTimer()
    protocol: dict = {"matcher": cfg.matcher_name()}

    with FeatureReader(features_path) as features:
        with timer("import"):
            keys_by_scene_name = resolve_feature_keys(features, scene, names)
            folder_names = [n[len("images/") :] for n in names]  # relative to the image folder, as COLMAP wants
            keys = {dn: keys_by_scene_name[n] for dn, n in zip(folder_names, names)}
            sizes = {dn: features.image_size(keys[dn]) for dn in folder_names}
            db, ids = _scene_database(scene_dir, db_path, folder_names, sizes, cfg, protocol)
            db_names = [dn for dn in folder_names if dn in ids]
        try:
            with timer("import"):
                sfm.import_keypoints(db, {dn: ids[dn] for dn in db_names}, features, keys)
            with timer("pairs"):
                pairs, pinfo = select_pairs(scene_dir, db_names, cfg, lambda n: features[keys[n]]["descriptors"], dev)
                protocol.update(pinfo)
            announce(f"eval-eth {scene}", dev, feature_method_name(features_path),
                     f"{len(db_names)} images, {len(pairs)} {pinfo.get('pairs', '')} pairs")  # fmt: skip
            with timer("matching"):
                ms = colmap.match_and_import(
                    db, features, keys, ids, pairs, ratio=cfg.ratio, mutual=cfg.mutual, device=dev, progress=progress
                )
        finally:
            db.close()
    log.info("%s: protocol %s", scene, protocol)

    stats = _zero_stats(len(db_names), gt)
    stats.update(num_pairs=ms.num_pairs, num_matched_pairs=ms.num_matched_pairs, num_matches=ms.num_matches)
    stats["protocol"] = protocol
    if not ms.matched_pairs:
        return _stop(scene, stats, timer, f"{scene}: no matches in {ms.num_pairs} pairs; nothing to reconstruct")

    with timer("verification"):
        sfm.verify(db_path, ms.matched_pairs, _verification_options(cfg), work)
        with sfm.open_database(db_path) as db:
            vs = colmap.verification_stats(db)
            report = colmap.verification_report(
                db, [(ids[a], ids[b]) for a, b in ms.matched_pairs], cfg.verification_min_inliers
            )
    stats.update(num_inlier_pairs=vs.num_inlier_pairs, num_inlier_matches=vs.num_inlier_matches)
    stats["verification"] = report
    _log_verification(scene, len(db_names), ms, vs, report)
    if vs.num_inlier_pairs == 0:
        return _stop(scene, stats, timer, f"{scene}: no pair passed geometric verification; nothing to reconstruct")

    with timer("focal_estimation"), sfm.open_database(db_path) as db:
        if cfg.focal_init == "two_view":
            focals = reconstruction.estimate_focals(db, cfg.verification_min_inliers, cfg.focal_factor)
            reconstruction.apply_focals(db, focals)
        else:
            focals = reconstruction.camera_focals(db)
    protocol["focal_init"] = cfg.focal_init
    protocol["focal_sources"] = focals.counts()
    with timer("mapping"):
        opts = colmap.mapper_options(num_threads=cfg.num_threads, seed=cfg.seed, min_num_matches=cfg.min_num_matches)
        rec, model_dir, num_models, mrep = reconstruction.reconstruct(
            db_path, scene_dir / "images", work / "sparse", opts, len(db_names), cfg.mapping_attempts
        )
    stats["num_models"] = num_models
    stats["mapping"] = mrep.to_dict()
    if rec is None:
        return _stop(scene, stats, timer, f"{scene}: the mapper found no model (no good initial pair)")
    stats.update(colmap.reconstruction_stats(rec))
    if gt is not None:
        stats.update(pose_accuracy(rec, gt))
    msg = (
        f"ok: largest of {num_models} model(s) registers {rec.num_reg_images()}/{len(db_names)} images "
        f"(mapping attempt {mrep.best_attempt + 1} of {len(mrep.attempts)})"
    )
    log.info("%s: %s, %d points", scene, msg, rec.num_points3D())
    return SceneResult(scene, stats, timer.rounded(), msg, str(model_dir))


def _stop(scene: str, stats: dict, timer: sfm.PhaseTimer, msg: str) -> SceneResult:
    """A scene that ends before a model: its statistics so far and the reason, logged."""
    log.warning(msg)
    return SceneResult(scene, stats, timer.rounded(), msg)


def _scene_database(scene_dir: Path, db_path: Path, folder_names: list[str], sizes: dict, cfg: ETHConfig,
                    protocol: dict) -> tuple[pycolmap.Database, dict[str, int]]:  # fmt: skip
    """The open database with the scene's cameras and images (the release's ``database.db`` when present and
    ``cfg.use_scene_database``, else one camera per image from EXIF or the guess) → ``(db, {name: id})``."""
    scene, scene_db = scene_dir.name, scene_dir / SCENE_DATABASE
    if cfg.use_scene_database and scene_db.is_file():
        db = colmap.copy_database_without_features(scene_db, db_path)
        try:
            ids = _cameras_from_database(db, folder_names, sizes, scene_db)
            n_db = db.num_images()
            if not ids:
                raise DataError(
                    f"{scene_db}: none of its {n_db} images is in {scene_dir / 'images'} "
                    f"(expected names relative to images/, e.g. {folder_names[0]!r})"
                )
        except BaseException:
            db.close()
            raise
        if len(ids) < len(folder_names):
            log.warning("%s: %d of the %d images in images/ are not in %s and are left out", scene,
                        len(folder_names) - len(ids), len(folder_names), scene_db)  # fmt: skip
        if len(ids) < n_db:
            log.warning("%s: %d images of %s are not in images/ and get no features", scene, n_db - len(ids), scene_db)
        protocol.update(cameras="database.db", camera_priors={"database": len(ids)})
        return db, ids
    db = colmap.create_database(db_path)
    ids = {}
    sources = {"exif": 0, "guess": 0}
    for dn in folder_names:
        cam, src = _camera_for_image(scene_dir / "images" / dn, sizes[dn], cfg)
        sources[src] += 1
        ids[dn] = colmap.add_image(db, dn, colmap.add_camera(db, cam))
    protocol.update(cameras="one per image (EXIF focal prior, else guess)", camera_priors=sources)
    return db, ids


def _verification_options(cfg: ETHConfig) -> pycolmap.TwoViewGeometryOptions:
    """COLMAP's two-view verification settings of ``cfg``."""
    return colmap.two_view_geometry_options(
        cfg.verification_max_error,
        cfg.verification_min_inliers,
        cfg.seed,
        max_num_trials=cfg.verification_max_num_trials,
        min_inlier_ratio=cfg.verification_min_inlier_ratio,
    )


def _log_verification(scene: str, num_images: int, ms, vs, report: dict) -> None:
    log.info("%s: %d images, %d pairs, %d matched, %d verified (%d inlier matches)", scene, num_images, ms.num_pairs,
             ms.num_matched_pairs, vs.num_inlier_pairs, vs.num_inlier_matches)  # fmt: skip
    log.info(
        "%s: verification by configuration %s; inlier ratio of verified pairs %s, of failed pairs %s "
        "(failed pairs' median raw matches %s)",
        scene,
        report["configs"],
        report["inlier_ratio_verified"],
        report["inlier_ratio_failed"],
        report["raw_matches_failed_median"],
    )


def evaluate_eth(
    root: str | os.PathLike,
    features_path: str | os.PathLike,
    workdir: str | os.PathLike,
    config: ETHConfig | None = None,
    scenes: Sequence[str] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, SceneResult]:
    """:func:`evaluate_scene` for every scene under an ETH root (or the named ``scenes``).

    Work folders are ``<workdir>/<Scene>``; feature names are relative to the root.
    """
    root = Path(root)
    scenes = list(scenes) if scenes is not None else list_scenes(root)
    if not scenes:
        raise DataError(f"{root}: no ETH scene (expected <root>/<Scene>/images/)")
    return {s: evaluate_scene(root / s, features_path, Path(workdir) / s, config, device, progress) for s in scenes}


STAT_COLUMNS = (
    "num_reg_images",
    "num_sparse_points",
    "num_observations",
    "mean_track_length",
    "num_observations_per_image",
    "mean_reproj_error",
    "median_rotation_error_deg",
    "median_center_error",
    "pose_auc@5",
    "pose_auc@10",
    "pose_auc@20",
)


def format_table(results: dict[str, dict[str, dict]]) -> str:
    """Text table of ``{method: {scene: stats}}``."""
    short = {
        "num_reg_images": "reg",
        "num_sparse_points": "points",
        "num_observations": "obs",
        "mean_track_length": "track",
        "num_observations_per_image": "obs/img",
        "mean_reproj_error": "reproj",
        "median_rotation_error_deg": "rot°",
        "median_center_error": "centre",
        "pose_auc@5": "auc5",
        "pose_auc@10": "auc10",
        "pose_auc@20": "auc20",
    }
    lines = [f"{'method':<10}{'scene':<16}" + "".join(f"{short[c]:>9}" for c in STAT_COLUMNS)]
    for method, per_scene in results.items():
        for scene, s in per_scene.items():
            cells = []
            for c in STAT_COLUMNS:
                v = s.get(c)
                cells.append(f"{'-':>9}" if v is None else (f"{v:>9d}" if isinstance(v, int) else f"{v:>9.3f}"))
            lines.append(f"{method:<10}{scene:<16}" + "".join(cells))
    return "\n".join(lines)


__all__ = [
    "AUC_THRESHOLDS",
    "ETHConfig",
    "SceneResult",
    "select_pairs",
    "exhaustive_pairs",
    "read_pair_list",
    "pose_auc",
    "relative_pose_errors",
    "align_similarity",
    "absolute_pose_errors",
    "pose_accuracy",
    "fresh_workdir",
    "resolve_feature_keys",
    "evaluate_scene",
    "evaluate_eth",
    "format_table",
]
