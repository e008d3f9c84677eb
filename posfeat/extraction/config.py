"""The extraction settings: :class:`ExtractConfig` (params.yaml ``extract.<dataset>``), its allowed values, and
the command-line help of each field (``metadata["help"]``, read by :mod:`posfeat.cli.flags`).

This module imports neither torch nor OpenCV, so ``posfeat --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from posfeat.io import DESCRIPTOR_DTYPES
from posfeat.settings import config_from_dict, setting

METHODS = ("posfeat", "sift", "rootsift")
"""What :func:`~posfeat.extraction.extract_dataset` extracts (``posfeat_sift`` is ``posfeat`` with
``sift_keypoints``)."""
THRESHOLD_MODES = ("abs", "max", "mean")
SUBPIXEL_MODES = ("centroid", "quadratic")
"""The ``subpixel`` refinements (:data:`posfeat.extraction.keypoints.SUBPIXEL_REFINERS`)."""
GPU_BATCH_PIXELS = 8 * 640 * 480
"""Default pixel budget of one network call on CUDA (``batch_size: None``): 8 images of 640×480."""


@dataclass
class ExtractConfig:
    """Detector settings (defaults: the official HPatches configuration, docs/method.md#feature-extraction).

    Attributes:
        max_keypoints: keep at most this many keypoints per image (``None`` or ``<= 0``: all).
        nms_radius: NMS window radius ``r`` (window ``2r+1``); 0 disables NMS.
        threshold: score threshold ``t`` (PoSFeat only); ``None`` disables it.
        threshold_mode: ``abs`` | ``max`` | ``mean`` | ``None``.
        border: pixels this close to the image edge are never keypoints (1 = the original's interior).
        subpixel: sub-pixel refinement of a score peak: ``centroid`` (the original: the score-weighted 3×3
            centroid) | ``quadratic`` (a parabola per axis); see :mod:`posfeat.extraction.keypoints`.
        sift_keypoints: PoSFeat descriptors on OpenCV SIFT keypoints (scores = SIFT responses).
        batch_size: images of equal size per network call; ``None`` = 1 on CPU, and on CUDA up to 8
            images within :data:`GPU_BATCH_PIXELS` pixels.
        pad_multiple: the network's input size multiple (16 for the ResUNet).
        scales: image scales the network runs at (``[1.0]`` = the original, single scale). With several
            and no ``pyramid``, the score map is the mean of the per-scale maps resized to the image, and a
            descriptor is the normalised sum of the unit descriptors of every scale at the keypoint
            (multi-scale, as D2-Net's test time; the official PoSFeat extracts at one scale).
        pyramid: with several ``scales``, keep every scale's own keypoints and descriptors instead of
            fusing the scales (a scale pyramid, as R2D2's multi-scale extraction): keypoints are detected on
            each scale's score map, described from that scale's map, mapped back to image pixels, pooled,
            and the ``max_keypoints`` best kept. A feature seen at scale ``s`` in one image and at ``1`` in a
            view zoomed by ``s`` then gets the same descriptor. With ``sift_keypoints`` each SIFT keypoint is
            described at the scale nearest (in log) to ``pyramid_sift_size / size`` (its SIFT size, capped
            at the scale range).
        pyramid_sift_size: SIFT keypoint size (OpenCV ``KeyPoint.size``, pixels) described at scale 1 in a
            pyramid; larger keypoints are described at proportionally smaller scales.
        rotations: in-plane rotations (degrees) of the image the network also runs on (``[0.0]`` = upright
            only, the original). Each rotated view (:mod:`posfeat.rotations`: same canvas, reflected
            corners) is extracted with the settings above; its keypoints lying at least ``rotation_margin``
            pixels inside the image are mapped back to image pixels with their own descriptors, pooled with
            the other views', and the ``max_keypoints`` best kept. Two images rotated by about one step of
            the list then match. With ``sift_keypoints`` every SIFT keypoint is described once per view that
            holds it (so up to ``len(rotations)`` descriptors at one position).
        rotation_margin: pixels from the image edge (and, for SIFT keypoints, from the view's edge) within
            which a rotated view's keypoints are dropped.
        amp: run the network under mixed precision (:func:`posfeat.utils.autocast_dtype`: bfloat16 on a CPU
            that has it natively, else float32); descriptors and scores are float32 after the network.
        descriptor_dtype: how descriptors are *stored* in the feature file: ``float16`` (half the disk, as
            hloc) | ``float32``. Readers return float32 either way.
    """

    max_keypoints: int | None = setting(8192, "keypoints per image (at most)")
    nms_radius: int = setting(1, "non-maximum suppression radius in pixels (PoSFeat)")
    threshold: float | None = setting(0.9, "score threshold (PoSFeat)")
    threshold_mode: str | None = setting(
        "abs", "how --threshold applies to the score map (PoSFeat)", THRESHOLD_MODES + ("none",)
    )
    border: int = setting(1, "pixels from the image edge that are never keypoints", cli=False)
    subpixel: str = setting(
        "centroid",
        "sub-pixel refinement of a score peak: the official 3x3 centroid or a parabola per axis (PoSFeat)",
        SUBPIXEL_MODES,
    )
    sift_keypoints: bool = setting(
        False, "PoSFeat descriptors on SIFT keypoints (--method posfeat_sift)", cli=False, study=False
    )
    batch_size: int | None = setting(None, "images of one size per network call", cli=False)
    pad_multiple: int = setting(16, "the network's input size multiple", cli=False, study=False)
    scales: tuple[float, ...] = setting((1.0,), "image scales the network runs at (PoSFeat)")
    pyramid: bool = setting(
        False, "keep every scale's own keypoints and descriptors instead of fusing the scales (PoSFeat)"
    )
    pyramid_sift_size: float = setting(
        2.8, "posfeat_sift in a pyramid: the OpenCV keypoint size (px) described at scale 1"
    )
    rotations: tuple[float, ...] = setting(
        (0.0,), "in-plane rotations (degrees) of the image the network also runs on, pooled (PoSFeat)"
    )
    rotation_margin: float = setting(4.0, "px; a rotated view's keypoints this near the edge are dropped", cli=False)
    amp: bool = setting(False, "mixed precision (bfloat16 on a CPU that has it natively)")
    descriptor_dtype: str = setting(
        "float16", "how descriptors are stored (read back as float32 either way)", DESCRIPTOR_DTYPES
    )

    def __post_init__(self) -> None:
        if self.descriptor_dtype not in DESCRIPTOR_DTYPES:
            raise ValueError(f"descriptor_dtype must be one of {DESCRIPTOR_DTYPES}, got {self.descriptor_dtype!r}")
        self.rotations = _angles(self.rotations)
        if not self.rotation_margin >= 0:
            raise ValueError(f"rotation_margin must be >= 0 pixels, got {self.rotation_margin!r}")
        self.scales = _scales(self.scales)
        if not self.pyramid_sift_size > 0:
            raise ValueError(f"pyramid_sift_size must be > 0 pixels, got {self.pyramid_sift_size!r}")
        if self.threshold_mode in ("none", "None"):
            self.threshold_mode = None
        if self.threshold_mode is not None and self.threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES} or None, got {self.threshold_mode!r}")
        if self.subpixel not in SUBPIXEL_MODES:
            raise ValueError(f"subpixel must be one of {SUBPIXEL_MODES}, got {self.subpixel!r}")
        if self.nms_radius < 0 or self.border < 0 or self.pad_multiple < 1:
            raise ValueError(
                f"need nms_radius >= 0, border >= 0, pad_multiple >= 1; got {self.nms_radius}, {self.border}, "
                f"{self.pad_multiple}"
            )

    @classmethod
    def from_dict(cls, d: dict | None, what: str = "extract") -> "ExtractConfig":
        """From params mapping ``what`` (e.g. ``extract.hpatches``); unknown keys or wrong types name the key."""

        return config_from_dict(cls, d, what)


def _angles(value) -> tuple[float, ...]:
    """``rotations`` as a tuple of distinct angles in [-180, 180] degrees (a single number allowed)."""
    rots = (value,) if isinstance(value, (int, float)) else tuple(value)
    if not rots or not all(isinstance(v, (int, float)) and -180.0 <= v <= 180.0 for v in rots):
        raise ValueError(f"rotations must be a non-empty list of angles in [-180, 180] degrees, got {value!r}")
    if len(set(rots)) != len(rots):
        raise ValueError(f"rotations must not repeat an angle, got {value!r}")
    return tuple(float(v) for v in rots)


def _scales(value) -> tuple[float, ...]:
    """``scales`` as a tuple of image scales in [0.1, 4] (a single number allowed)."""
    scales = (value,) if isinstance(value, (int, float)) else tuple(value)
    if not scales or not all(isinstance(v, (int, float)) and 0.1 <= v <= 4.0 for v in scales):
        raise ValueError(f"scales must be a non-empty list of image scales in [0.1, 4], got {value!r}")
    return tuple(float(v) for v in scales)
