"""The own-photos settings: :class:`PhotosConfig` (params.yaml ``photos``), with the command-line help of each
field (``metadata["help"]``, read by :mod:`posfeat.cli.flags`)."""

from __future__ import annotations

from dataclasses import dataclass

from posfeat.settings import config_from_dict, setting


@dataclass
class PhotosConfig:
    """How photo collections become training scenes.

    Attributes:
        min_images: a collection needs at least this many readable photos.
        min_registered: fraction of a collection's photos the model must register (else it is skipped).
        max_keypoints: SIFT keypoints per photo for the reconstruction.
        max_image_size: photos are reconstructed and written at most this many pixels on their long side
            (larger ones are downscaled first, cameras follow); ``None`` keeps full size.
        max_exhaustive_images: exhaustive pairs up to this many photos, sequential pairs above.
        retrieval_neighbors: sequential pairs: each photo with this many following ones (file-name order).
        min_covisibility: a pair is written when each image sees at least this fraction of the 3D points
            the other sees (shared points / each image's points).
        rot_thr: degrees; pairs whose relative rotation is larger are not written (prepare's rule).
        mapping_attempts: mapper restarts while the largest model leaves photos out.
        self_calibration_rounds: rounds of robust bundle adjustment and mapping with the refined intrinsics
            held, for places whose photos lack a focal prior.
        structure_less_fallback: the mapper's registration from 2D–2D matches when none registers from 2D–3D.
        seed: RANSAC and mapper seed.
        num_threads: COLMAP threads (1: repeatable).
    """

    min_images: int = setting(3, "readable photos a place needs")
    min_registered: float = setting(0.5, "a place whose model registers a smaller fraction of its photos is skipped")
    max_keypoints: int = setting(8192, "SIFT keypoints per photo for the reconstruction")
    max_image_size: int | None = setting(1600, "px; larger photos are downscaled (cameras follow); 0: full size")
    max_exhaustive_images: int = setting(200, "photos per place matched exhaustively; above, sequential pairs")
    retrieval_neighbors: int = setting(30, "sequential pairs: each photo with this many following ones")
    min_covisibility: float = setting(
        0.1, "a pair is written when each image sees this fraction of the other's 3D points"
    )
    rot_thr: float = setting(80.0, "degrees; pairs turned more are not written", param="prepare.rot_thr")
    mapping_attempts: int = setting(3, "mapper restarts (seed, seed+1, ...) while photos are left out")
    self_calibration_rounds: int = setting(
        3, "photos without a focal prior: rounds of robust BA + mapping with the refined intrinsics held (0: off)"
    )
    structure_less_fallback: bool = setting(
        True, "mapper: when no photo registers from 2D-3D matches, try 2D-2D registration (COLMAP 3.13 and later)"
    )
    seed: int = setting(0, "RANSAC and mapper seed", param="seed")
    num_threads: int = setting(1, "COLMAP threads (1: repeatable; -1: all cores)")

    @classmethod
    def from_dict(cls, d: dict | None, what: str = "photos") -> "PhotosConfig":
        """From params mapping ``what``; unknown keys or wrong types name the key."""
        return config_from_dict(cls, d, what)
