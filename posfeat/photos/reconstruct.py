"""One photo collection reconstructed: the photos copied upright (downscaled where large), COLMAP's SIFT and
matching (exhaustive up to ``max_exhaustive_images`` photos, sequential above), then the ETH evaluation's own
reconstruction (:mod:`posfeat.sfm.reconstruction`), mapped again without the EXIF focal lengths when the model with
them leaves photos out."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from posfeat.io import DataError
from posfeat.photos.config import PhotosConfig

logger = logging.getLogger(__name__)


def _downscaled_copy(folder: Path, names: list[str], out: Path, max_size: int | None) -> None:
    """The photos under ``out/`` with the same names: copied as they are, or, when larger than ``max_size`` px
    on their long side or turned by an EXIF orientation, re-encoded upright and downscaled with their EXIF kept
    (COLMAP's focal prior follows the new size)."""
    from PIL import Image, ImageOps

    for n in names:
        dst = out / n
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(folder / n) as im:
            exif = im.getexif()
            turned = exif.get(0x0112, 1) != 1
            big = bool(max_size) and max(im.size) > max_size
            if not (turned or big):
                shutil.copyfile(folder / n, dst)
                continue
            up = ImageOps.exif_transpose(im)
            if big:
                s = max_size / max(up.size)
                up = up.resize((round(up.size[0] * s), round(up.size[1] * s)), Image.Resampling.LANCZOS)
            exif[0x0112] = 1
            kind = "JPEG" if dst.suffix.lower() in (".jpg", ".jpeg") else None
            up.convert("RGB").save(dst, format=kind, exif=exif.tobytes(), **({"quality": 95} if kind else {}))


def reconstruct_collection(folder: Path, names: list[str], work: Path, cfg: PhotosConfig):
    """``(pycolmap.Reconstruction, image folder, focal sources)`` of one collection: COLMAP's SIFT and matching
    (ratio test, cross-check, two-view verification), then the ETH evaluation's reconstruction
    (:mod:`posfeat.sfm.reconstruction`: focal lengths self-calibrated from the verified pairs where photos have no
    EXIF focal length, incremental mapping restarted while photos are left out)."""
    import pycolmap

    from posfeat.sfm import colmap, verification

    image_dir = work / "images"
    _downscaled_copy(folder, names, image_dir, cfg.max_image_size)
    db_path = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = int(cfg.max_keypoints)
    extraction.num_threads = int(cfg.num_threads)
    matching_options = pycolmap.FeatureMatchingOptions()
    matching_options.num_threads = int(cfg.num_threads)
    verification_options = verification.two_view_geometry_options(seed=cfg.seed)
    with colmap.colmap_log_level(False):
        pycolmap.extract_features(
            db_path,
            image_dir,
            names,
            camera_mode=pycolmap.CameraMode.PER_IMAGE,
            reader_options=reader,
            extraction_options=extraction,
            device=pycolmap.Device.cpu,
        )
        if len(names) <= cfg.max_exhaustive_images:
            pycolmap.match_exhaustive(
                db_path, matching_options, verification_options=verification_options, device=pycolmap.Device.cpu
            )
        else:  # photos named in capture order: each with its neighbours, plus quadratic steps for loops
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = int(cfg.retrieval_neighbors)
            pycolmap.match_sequential(
                db_path, matching_options, pairing, verification_options, device=pycolmap.Device.cpu
            )
    rec, focals = _map(db_path, image_dir, work / "sparse", len(names), cfg, drop_priors=False)
    if rec is not None and rec.num_reg_images() < len(names) and focals.counts()["prior"]:
        # EXIF focal lengths can be wrong (crops, resized copies, a phone's misreported lens): map again with
        # them treated as guesses, self-calibrated from the verified pairs, and keep the better model
        again, focals2 = _map(db_path, image_dir, work / "sparse_no_exif", len(names), cfg, drop_priors=True)
        logger.info(
            "%s: %d/%d photos registered with the EXIF focal lengths, %d without them",
            folder.name,
            rec.num_reg_images(),
            len(names),
            0 if again is None else again.num_reg_images(),
        )
        if again is not None and again.num_reg_images() > rec.num_reg_images():
            rec, focals = again, focals2
    if rec is None:
        raise DataError(
            f"{folder}: no reconstruction (no pair of photos to start from); the photos need to "
            "overlap: several views of the same place from nearby viewpoints"
        )
    return rec, image_dir, focals.counts()


def _map(db_path: Path, image_dir: Path, out: Path, num_images: int, cfg: PhotosConfig, drop_priors: bool):
    """Initial focal lengths (self-calibrated where there is no prior; ``drop_priors``: none kept) and the
    restarted incremental mapping of :mod:`posfeat.sfm.reconstruction` → ``(largest model or None, focal estimate)``."""
    import pycolmap

    from posfeat.sfm import colmap, reconstruction, two_view_focals

    db = pycolmap.Database.open(str(db_path))
    try:
        if drop_priors:
            two_view_focals.drop_focal_priors(db)
        focals = two_view_focals.estimate_focals(db)
        two_view_focals.apply_focals(db, focals)
    finally:
        db.close()
    opts = colmap.mapper_options(
        num_threads=cfg.num_threads, seed=cfg.seed, structure_less_fallback=cfg.structure_less_fallback
    )
    rec, _, _, rep = reconstruction.reconstruct(db_path, image_dir, out, opts, num_images, cfg.mapping_attempts)
    if rec is not None and cfg.self_calibration_rounds > 0 and focals.counts()["prior"] < len(focals.source):
        rec, _ = reconstruction.self_calibrate(
            db_path, image_dir, out / "self_calibration", opts, rec, num_images, cfg.self_calibration_rounds, rep,
        )  # fmt: skip
    return rec, focals
