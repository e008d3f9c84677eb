"""Test-time local features: PoSFeat (detector score map + descriptor map) and OpenCV SIFT / RootSIFT.

How ``method`` flows through the package, from a dataset down to one score map:

* :mod:`~posfeat.extraction.dataset`: :func:`extract_dataset` reads the images, batches those of one size and
  writes one hloc-layout HDF5 file; ``sift`` / ``rootsift`` go to :mod:`~posfeat.extraction.sift`, ``posfeat``
  (and ``posfeat_sift``, ``posfeat`` with ``sift_keypoints``) to the extractor.
* :mod:`~posfeat.extraction.extractor`: :func:`extract_posfeat_batch` runs one view per rotation and pools them.
* :mod:`~posfeat.extraction.views`: one view over the scales (fused, or a pyramid), rotated views mapped back.
* :mod:`~posfeat.extraction.network`: the model at each scale, padded to its input multiple.
* :mod:`~posfeat.extraction.keypoints`: NMS, threshold, sub-pixel peaks and descriptor sampling (the rules).
* :mod:`~posfeat.extraction.config`: :class:`ExtractConfig`, the settings (params.yaml ``extract.<dataset>``).
* :mod:`~posfeat.extraction.methods`: what each name of ``extract.methods`` is (kind, source file per benchmark).
* :mod:`~posfeat.extraction.given`: a method's features given as hloc files, checked and imported.

The names below load their module on first use, so importing :class:`ExtractConfig` needs no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ExtractConfig": "config",
    "GPU_BATCH_PIXELS": "config",
    "METHODS": "config",
    "SUBPIXEL_MODES": "config",
    "THRESHOLD_MODES": "config",
    "SUBPIXEL_REFINERS": "keypoints",
    "describe": "keypoints",
    "detect_keypoints": "keypoints",
    "nms_mask": "keypoints",
    "refine_subpixel": "keypoints",
    "refine_subpixel_quadratic": "keypoints",
    "extract_sift": "sift",
    "extract_posfeat": "extractor",
    "extract_posfeat_and_sift_batch": "extractor",
    "extract_posfeat_batch": "extractor",
    "load_model": "extractor",
    "extract_dataset": "dataset",
    "import_features": "given",
    "KINDS": "methods",
    "MethodSpec": "methods",
    "method_specs": "methods",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The public name ``name`` from the submodule that defines it (imported on first use)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
