"""Descriptor matching into a COLMAP database: :func:`match_and_import` matches image pairs
(:func:`posfeat.matching.match_descriptors`) and writes their raw matches (:func:`posfeat.sfm.colmap.import_matches`).

Descriptors are read from the feature file and kept on the matching device while recent (:class:`DescriptorCache`).
When the pairs name more images than the cache holds, they are matched tile by tile (:func:`cache_friendly_order`),
so that an exhaustive scene of n images reads about n²/cache descriptor sets instead of one per pair. Repeated or
reversed pairs are matched once, and pairs without a match are counted, not written.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import pycolmap
import torch
from tqdm import tqdm

from posfeat.io import DataError, FeatureReader, check_descriptor_dims
from posfeat.matching import match_descriptors
from posfeat.sfm.colmap import import_matches


class DescriptorCache:
    """Descriptors of a feature file as tensors on ``device``, the ``size`` most recently used kept."""

    def __init__(self, features: FeatureReader, device: torch.device, size: int = 64):
        self.features = features
        self.device = device
        self.size = max(1, int(size))
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.reads = 0  # descriptor sets read from the file

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        self.reads += 1
        d = torch.from_numpy(self.features[key]["descriptors"]).to(self.device, torch.float32)
        self._cache[key] = d
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return d


@dataclass
class MatchImportStats:
    """Counts of :func:`match_and_import`."""

    num_pairs: int = 0  # pairs asked for (after de-duplication)
    num_matched_pairs: int = 0  # pairs with ≥ 1 match, written to the database
    num_empty_pairs: int = 0  # pairs with no match (skipped)
    num_duplicate_pairs: int = 0  # repeated or reversed pairs (skipped)
    num_matches: int = 0
    descriptor_reads: int = 0  # descriptor sets read from the feature file
    matched_pairs: list[tuple[str, str]] = field(default_factory=list)  # in the order they were asked for


def cache_friendly_order(pairs: Sequence[tuple[str, str]], cache_size: int) -> list[int]:
    """The indices of ``pairs`` in the order an LRU cache of ``cache_size`` descriptor sets serves best.

    The given order when the pairs name at most ``cache_size`` images. Otherwise the images are numbered in
    order of first appearance and cut into blocks of ``cache_size // 2``; the pairs are taken tile by tile
    (block × block, in row order, the given order within a tile), so that a tile's images all fit in the cache.
    Exhaustive pairs of n images then read about n² / (cache_size / 2) descriptor sets instead of n² / 2.
    """
    number: dict[str, int] = {}
    for a, b in pairs:
        number.setdefault(a, len(number))
        number.setdefault(b, len(number))
    if len(number) <= cache_size:
        return list(range(len(pairs)))
    block = max(1, cache_size // 2)

    def tile(i: int) -> tuple[int, int]:
        x, y = number[pairs[i][0]] // block, number[pairs[i][1]] // block
        return (min(x, y), max(x, y))

    return sorted(range(len(pairs)), key=tile)


def lru_reads(pairs: Iterable[tuple[str, str]], cache_size: int) -> int:
    """The descriptor sets a :class:`DescriptorCache` of ``cache_size`` reads to serve ``pairs`` in the order
    given (an I/O estimate for a pair list before matching it)."""
    cache: OrderedDict[str, None] = OrderedDict()
    reads = 0
    for pair in pairs:
        for name in pair:
            if name in cache:
                cache.move_to_end(name)
                continue
            reads += 1
            cache[name] = None
            if len(cache) > cache_size:
                cache.popitem(last=False)
    return reads


def match_and_import(
    db: pycolmap.Database,
    features: FeatureReader,
    feature_keys: Mapping[str, str],
    image_ids: Mapping[str, int],
    pairs: Iterable[tuple[str, str]],
    ratio: float | None = None,
    mutual: bool = True,
    device: str | torch.device = "cpu",
    cache_size: int = 64,
    progress: bool = True,
) -> MatchImportStats:
    """Match descriptors of image pairs (``posfeat.matching``) and write the raw matches to ``db``.

    Args:
        db: open database that already holds the images and their keypoints.
        features: the feature file; ``feature_keys[name]`` is the HDF5 group of database image ``name``.
        image_ids: ``{database image name: image id}``.
        pairs: ``(nameA, nameB)`` database image names; repeated (or reversed) pairs are matched once.
        ratio, mutual: matcher settings (mutual NN and/or Lowe ratio on distances).
        cache_size: descriptor sets kept in memory; with more images than this, pairs are matched in
            :func:`cache_friendly_order`.

    Returns:
        the counts (matched pairs in the given order); pairs with zero matches are skipped (not written) and
        counted.
    """
    stats = MatchImportStats()
    cache = DescriptorCache(features, torch.device(device), cache_size)
    todo = _unique_pairs(pairs, image_ids, stats)
    matched: list[tuple[int, tuple[str, str]]] = []
    order = cache_friendly_order(todo, cache_size)
    for k in tqdm(order, desc="matching", unit="pair", disable=not progress or len(order) < 50):
        a, b = todo[k]
        da, db_ = cache[feature_keys[a]], cache[feature_keys[b]]
        check_descriptor_dims(features.path, da, features.path, db_, feature_keys[a], feature_keys[b])
        m = match_descriptors(da, db_, mutual=mutual, ratio=ratio, device=device)
        n = import_matches(db, image_ids[a], image_ids[b], m)
        if n == 0:
            stats.num_empty_pairs += 1
            continue
        stats.num_matched_pairs += 1
        stats.num_matches += n
        matched.append((k, (a, b)))
    stats.matched_pairs = [pair for _, pair in sorted(matched)]
    stats.descriptor_reads = cache.reads
    return stats


def _unique_pairs(
    pairs: Iterable[tuple[str, str]], image_ids: Mapping[str, int], stats: MatchImportStats
) -> list[tuple[str, str]]:
    """``pairs`` without repeated or reversed ones and without self-pairs (counted in ``stats``), in the given
    order; a name that is not in ``image_ids`` is a :class:`~posfeat.io.DataError`."""
    seen: set[tuple[int, int]] = set()
    out = []
    for a, b in pairs:
        for n in (a, b):
            if n not in image_ids:
                raise DataError(f"pair ({a}, {b}): image {n!r} is not in the database")
        ia, ib = image_ids[a], image_ids[b]
        key = (min(ia, ib), max(ia, ib))
        if ia == ib or key in seen:
            stats.num_duplicate_pairs += 1
            continue
        seen.add(key)
        out.append((a, b))
    stats.num_pairs = len(out)
    return out


__all__ = ["DescriptorCache", "MatchImportStats", "cache_friendly_order", "lru_reads", "match_and_import"]
