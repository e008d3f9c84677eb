"""Features of a whole image set into one hloc-layout HDF5 file (:func:`extract_dataset`).

**Batching.** Consecutive images of equal size share one network call (on CUDA up to 8 images within
:data:`~posfeat.extraction.config.GPU_BATCH_PIXELS`); detection and description are per image, so results equal
single-image calls. Images are read one batch ahead in a background thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from posfeat.datasets.images import read_image
from posfeat.extraction.config import GPU_BATCH_PIXELS, METHODS, ExtractConfig
from posfeat.extraction.extractor import Results, extract_posfeat_and_sift_batch, extract_posfeat_batch
from posfeat.extraction.sift import extract_sift
from posfeat.io import DataError, FeatureWriter
from posfeat.utils import announce, resolve_device

logger = logging.getLogger(__name__)


def _prefetch(root: Path, names: Sequence[str], depth: int = 4) -> Iterator[tuple[str, np.ndarray]]:
    """Read images in a background thread, ``depth`` ahead (OpenCV releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: deque = deque()
        it = iter(names)
        for name in it:
            queue.append((name, pool.submit(read_image, root / name)))
            if len(queue) >= depth:
                break
        while queue:
            name, fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(read_image, root / nxt)))
            yield name, fut.result()


def _batches(
    items: Iterable[tuple[str, np.ndarray]], batch_size: int, max_pixels: int | None = None
) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Consecutive images of equal shape, at most ``batch_size`` (and ``max_pixels`` in all) at a time.

    A single image larger than ``max_pixels`` still forms a batch of one.
    """
    batch: list[tuple[str, np.ndarray]] = []
    for name, img in items:
        if batch:
            full = len(batch) >= batch_size
            too_big = max_pixels is not None and (len(batch) + 1) * img.shape[0] * img.shape[1] > max_pixels
            if full or too_big or img.shape != batch[0][1].shape:
                yield batch
                batch = []
        batch.append((name, img))
    if batch:
        yield batch


def _batch_limits(method: str, cfg: ExtractConfig, dev: torch.device) -> tuple[int, int | None]:
    """``(images, pixels)`` per network call: ``cfg.batch_size``, else up to 8 images within
    :data:`GPU_BATCH_PIXELS` on CUDA (the memory of the full-resolution head), else one; SIFT: one."""
    if method != "posfeat":
        return 1, None
    if cfg.batch_size:
        return int(cfg.batch_size), None
    if dev.type == "cuda":
        return 8, GPU_BATCH_PIXELS
    return 1, None


def _batch_features(
    method: str, model, images: list[np.ndarray], cfg: ExtractConfig, dev: torch.device, both: bool
) -> tuple[Results, Results | None]:
    """The features of one batch → ``(features, PoSFeat on SIFT keypoints or None)``; ``both``: the second
    from the same network calls."""
    if both:
        return extract_posfeat_and_sift_batch(model, images, cfg, dev)
    if method == "posfeat":
        return extract_posfeat_batch(model, images, cfg, dev), None
    return [extract_sift(im, cfg.max_keypoints, root=method == "rootsift") for im in images], None


def _write(writer: FeatureWriter, name: str, f: dict[str, np.ndarray]) -> None:
    """One image's feature dict into ``writer`` (SIFT's ``scales`` and ``oris`` too, when present)."""
    writer.add(
        name,
        f["keypoints"],
        f["scores"],
        f["descriptors"],
        f["image_size"],
        **{k: f[k] for k in ("scales", "oris") if k in f},
    )


def _count_summary(counts: Sequence[int]) -> dict:
    """Mean, min and max keypoints per image."""
    return {
        "keypoints_mean": float(np.mean(counts)),
        "keypoints_min": int(np.min(counts)),
        "keypoints_max": int(np.max(counts)),
    }


def _check_request(method: str, cfg: ExtractConfig, model, sift_out, names: list[str], root: Path) -> None:
    """A ``ValueError`` or :class:`DataError` for a request :func:`extract_dataset` cannot serve."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if sift_out is not None and (method != "posfeat" or cfg.sift_keypoints):
        raise ValueError("sift_out needs method 'posfeat' without config.sift_keypoints")
    if not names:
        raise DataError(f"{root}: no images to extract")
    if method == "posfeat" and model is None:
        raise ValueError("method 'posfeat' needs a model")


def _writers(out_path, sift_out, method: str, cfg: ExtractConfig) -> tuple:
    """The feature file's writer and, with ``sift_out``, the on-SIFT-keypoints file's (else a null context)."""
    attrs = {"method": method, "config": json.dumps(asdict(cfg))}
    sift_attrs = {"method": method, "config": json.dumps({**asdict(cfg), "sift_keypoints": True})}
    dt = cfg.descriptor_dtype
    return (
        FeatureWriter(out_path, attrs=attrs, descriptor_dtype=dt),
        (
            FeatureWriter(sift_out, attrs=sift_attrs, descriptor_dtype=dt)
            if sift_out is not None
            else contextlib.nullcontext()
        ),
    )


def extract_dataset(
    method: str,
    image_root: str | os.PathLike,
    names: Sequence[str],
    out_path: str | os.PathLike,
    model=None,
    config: ExtractConfig | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    sift_out: str | os.PathLike | None = None,
) -> dict:
    """Extract features of ``names`` (relative to ``image_root``) into one hloc-layout HDF5 file.

    The file appears only when every image succeeded (a corrupt or missing image raises
    :class:`~posfeat.io.DataError` naming it, and nothing is written).

    Args:
        method: ``posfeat`` | ``sift`` | ``rootsift``.
        image_root: folder the names are relative to (the group names in the file).
        names: image names.
        out_path: output ``.h5``.
        model: the PoSFeat model (``method == "posfeat"``), moved to ``device``.
        config: extraction settings.
        device: ``auto`` | ``cpu`` | ``cuda[:N]``.
        progress: show a tqdm bar.
        sift_out: ``posfeat`` only: also write PoSFeat descriptors on OpenCV SIFT keypoints (the file that
            ``config.sift_keypoints`` gives) to this ``.h5``, from the same network calls.

    Returns:
        A summary: method, number of images, keypoints per image (mean/min/max), seconds, images/s (with
        ``sift_out``, ``on_sift_keypoints`` holds the second file's keypoint counts).
    """
    cfg = config or ExtractConfig()
    root, names = Path(image_root), list(names)
    _check_request(method, cfg, model, sift_out, names, root)
    dev = resolve_device(device)
    if method == "posfeat":
        model = model.to(dev)
    shown = "posfeat_sift" if cfg.sift_keypoints else method
    announce(
        f"extract {shown}" + (" + posfeat_sift" if sift_out is not None else ""),
        dev,
        model if method == "posfeat" else f"OpenCV {method.upper()}",
        f"{len(names)} images under {root}",
    )
    t0 = time.perf_counter()
    counts, sift_counts = _extract_all(method, model, root, names, out_path, sift_out, cfg, dev, progress)
    summary = _summary(method, counts, sift_counts, time.perf_counter() - t0, dev, cfg)
    logger.info(
        "%s: %d images, %.1f keypoints/image (min %d, max %d), %.1f s → %s%s",
        method,
        len(counts),
        summary["keypoints_mean"],
        summary["keypoints_min"],
        summary["keypoints_max"],
        summary["seconds"],
        out_path,
        "" if sift_out is None else f" and {sift_out} (on SIFT keypoints)",
    )
    return summary


def _extract_all(
    method: str, model, root: Path, names: list[str], out_path, sift_out, cfg: ExtractConfig, dev, progress: bool
) -> tuple[list[int], list[int] | None]:
    """Extract and write every image → keypoint counts per image (and per image of ``sift_out``, else
    ``None``)."""
    counts: list[int] = []
    sift_counts: list[int] = []
    bar = tqdm(total=len(names), desc=f"extract {method}", unit="img", disable=not progress)
    writer_cm, sift_cm = _writers(out_path, sift_out, method, cfg)
    with writer_cm as writer, sift_cm as sift_writer:
        for batch in _batches(_prefetch(root, names), *_batch_limits(method, cfg, dev)):
            feats, on_sift = _batch_features(method, model, [im for _, im in batch], cfg, dev, sift_out is not None)
            for (name, _), f in zip(batch, feats):
                _write(writer, name, f)
                counts.append(len(f["keypoints"]))
            for (name, _), f in zip(batch, on_sift or ()):
                _write(sift_writer, name, f)
                sift_counts.append(len(f["keypoints"]))
            bar.update(len(batch))
    bar.close()
    return counts, sift_counts if sift_out is not None else None


def _summary(
    method: str, counts: list[int], sift_counts: list[int] | None, seconds: float, dev: torch.device, cfg
) -> dict:
    """What :func:`extract_dataset` returns."""
    summary = {
        "method": method,
        "num_images": len(counts),
        **_count_summary(counts),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(counts) / seconds, 3) if seconds > 0 else None,
        "device": str(dev),
        "config": asdict(cfg),
    }
    if sift_counts is not None:
        summary["on_sift_keypoints"] = _count_summary(sift_counts)
    return summary
