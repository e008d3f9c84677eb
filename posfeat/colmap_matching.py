"""Descriptor matching into a COLMAP database: :func:`match_and_import` matches image pairs
(:func:`posfeat.matching.match_descriptors`) and writes their raw matches (:func:`posfeat.colmap.import_matches`).

Descriptors are read once per image and kept on the matching device while recent (:class:`DescriptorCache`);
repeated or reversed pairs are matched once, and pairs without a match are counted, not written.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import pycolmap
import torch
from tqdm import tqdm

from posfeat.colmap import import_matches
from posfeat.io import DataError, FeatureReader, check_descriptor_dims
from posfeat.matching import match_descriptors


class DescriptorCache:
    """Descriptors of a feature file as tensors on ``device``, the ``size`` most recently used kept."""

    def __init__(self, features: FeatureReader, device: torch.device, size: int = 64):
        self.features = features
        self.device = device
        self.size = max(1, int(size))
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
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
    matched_pairs: list[tuple[str, str]] = field(default_factory=list)


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
        cache_size: descriptor sets kept in memory (pairs are processed in the given order).

    Returns:
        the counts; pairs with zero matches are skipped (not written) and counted.
    """
    stats = MatchImportStats()
    cache = DescriptorCache(features, torch.device(device), cache_size)
    seen: set[tuple[int, int]] = set()
    pairs = list(pairs)
    for a, b in tqdm(pairs, desc="matching", unit="pair", disable=not progress or len(pairs) < 50):
        for n in (a, b):
            if n not in image_ids:
                raise DataError(f"pair ({a}, {b}): image {n!r} is not in the database")
        ia, ib = image_ids[a], image_ids[b]
        key = (min(ia, ib), max(ia, ib))
        if ia == ib or key in seen:
            stats.num_duplicate_pairs += 1
            continue
        seen.add(key)
        stats.num_pairs += 1
        da, db_ = cache[feature_keys[a]], cache[feature_keys[b]]
        check_descriptor_dims(features.path, da, features.path, db_, feature_keys[a], feature_keys[b])
        m = match_descriptors(da, db_, mutual=mutual, ratio=ratio, device=device)
        n = import_matches(db, ia, ib, m)
        if n == 0:
            stats.num_empty_pairs += 1
            continue
        stats.num_matched_pairs += 1
        stats.num_matches += n
        stats.matched_pairs.append((a, b))
    return stats


__all__ = ["DescriptorCache", "MatchImportStats", "match_and_import"]
