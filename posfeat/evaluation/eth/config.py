"""The ETH pipeline's settings: :class:`ETHConfig` (params.yaml ``eval.eth`` plus ``seed``), with the
command-line help of each field (``metadata["help"]``, read by :mod:`posfeat.cli.flags`)."""

from __future__ import annotations

from dataclasses import dataclass

from posfeat.settings import ParamError, config_from_dict, setting

FOCAL_INITS = ("two_view", "guess")


@dataclass
class ETHConfig:
    """Settings of the ETH pipeline (params.yaml ``eval.eth`` plus ``seed``)."""

    ratio: float | None = setting(
        None, "Lowe ratio on both sides of the mutual NN (the official ETH script: 0.75); None or >= 1: off"
    )
    mutual: bool = setting(True, "mutual nearest neighbours")
    max_exhaustive_images: int | None = setting(
        1600, "exhaustive pairs up to this many images, else retrieval pairs (k nearest by bag of words)"
    )
    retrieval_neighbors: int = setting(50, "retrieval pairs: neighbours per image")
    retrieval_words: int = setting(1024, "visual words of the bag-of-words retrieval descriptor")
    pairs_file: str | None = setting(
        None,
        "pair list 'nameA nameB' (names relative to images/; a relative path: to the scene folder); None: the "
        "scene's own pairs.txt / image_pairs.txt / match_list.txt if any",
        flag="--pairs",
    )
    use_scene_database: bool = setting(
        True, "use the scene's database.db (cameras, names, ids) when present", flag="--database"
    )
    use_exif: bool = setting(True, "without a database: focal prior from EXIF, else the guess")
    camera_model: str = setting("SIMPLE_RADIAL", "COLMAP model of the cameras made without a database")
    focal_factor: float = setting(1.2, "guessed focal = factor x max(w, h) (COLMAP's default without EXIF)")
    verification_max_error: float = setting(4.0, "px, two-view RANSAC threshold (COLMAP default)")
    verification_min_inliers: int = setting(15, "inliers a verified pair needs (COLMAP default)")
    verification_max_num_trials: int = setting(20000, "two-view RANSAC trials at most (hloc; COLMAP: 10000)")
    verification_min_inlier_ratio: float = setting(0.1, "inlier ratio RANSAC plans for (hloc; COLMAP: 0.25)")
    min_num_matches: int = setting(15, "mapper: pairs with fewer verified matches are ignored (COLMAP default)")
    focal_init: str = setting(
        "two_view",
        "initial focal length of cameras without a prior: self-calibrated from the verified pairs (two_view) or "
        "COLMAP's 1.2·max(w, h) (guess)",
        FOCAL_INITS,
    )
    mapping_attempts: int = setting(
        3, "mapper runs with seeds seed, seed+1, ... while the largest model leaves images out"
    )
    self_calibration_rounds: int = setting(
        3,
        "for scenes with cameras without a focal prior: rounds of robust bundle adjustment and mapping with the "
        "refined intrinsics held, until the focal lengths move by less than one percent (0: COLMAP's mapper alone)",
    )
    structure_less_fallback: bool = setting(
        True,
        "mapper: when no image registers from its 2D-3D matches, try registration from 2D-2D matches (COLMAP 3.13 "
        "and later; each try is a RANSAC of up to 10000 trials)",
    )
    num_threads: int = setting(1, "COLMAP threads (1: repeatable mapping; -1: all cores, faster, varies run to run)")
    seed: int = setting(0, "every random seed: RANSAC, retrieval vocabulary, mapper", param="seed")

    def __post_init__(self) -> None:
        if self.focal_init not in FOCAL_INITS:
            raise ParamError(f"eval.eth.focal_init = {self.focal_init!r}: expected two_view or guess")
        if int(self.mapping_attempts) < 1:
            raise ParamError(f"eval.eth.mapping_attempts = {self.mapping_attempts!r}: expected an int >= 1")
        if int(self.self_calibration_rounds) < 0:
            raise ParamError(
                f"eval.eth.self_calibration_rounds = {self.self_calibration_rounds!r}: expected an int >= 0"
            )

    @classmethod
    def from_dict(cls, d: dict | None, what: str = "eval.eth") -> "ETHConfig":
        """From a params mapping; unknown keys are an error naming them."""
        return config_from_dict(cls, d, what)

    def matcher_name(self) -> str:
        """The matcher in words, e.g. ``mutual NN + ratio 0.75``."""
        m = "mutual NN" if self.mutual else "NN"
        return m + (f" + ratio {self.ratio:g}" if self.ratio is not None else "")
