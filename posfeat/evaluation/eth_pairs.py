"""The image pairs of an ETH scene under the benchmark's protocol (docs/method.md#eth-local-feature-benchmark).

:func:`select_pairs`: the scene's own pair list when it has one (``pairs.txt``, ``image_pairs.txt`` or
``match_list.txt``, or ``pairs_file``); else exhaustive (i < j) up to ``max_exhaustive_images`` images; else
retrieval pairs, each image with its ``retrieval_neighbors`` nearest neighbours by a bag-of-visual-words
TF-IDF descriptor (:mod:`posfeat.retrieval`), the stand-in for COLMAP's vocabulary-tree matcher.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from posfeat.io import DataError
from posfeat.utils import get_logger

if TYPE_CHECKING:
    from posfeat.evaluation.eth_config import ETHConfig

log = get_logger(__name__)

#: pair lists a scene may bring (names relative to ``images/``, one ``nameA nameB`` per line)
PAIR_LIST_NAMES: tuple[str, ...] = ("pairs.txt", "image_pairs.txt", "match_list.txt")


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


__all__ = ["PAIR_LIST_NAMES", "exhaustive_pairs", "read_pair_list", "find_pair_list", "select_pairs"]
