"""The image pairs of an ETH scene under the benchmark's protocol (docs/method.md#eth-local-feature-benchmark).

:func:`select_pairs`: the scene's own pair list when it has one (``pairs.txt``, ``image_pairs.txt`` or
``match_list.txt``, or ``pairs_file``); else exhaustive (i < j) up to ``max_exhaustive_images`` images; else
retrieval pairs, each image with its ``retrieval_neighbors`` nearest neighbours by a bag-of-visual-words
TF-IDF descriptor (:mod:`posfeat.sfm.retrieval`), the stand-in for COLMAP's vocabulary-tree matcher.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from posfeat.datasets.records import read_pair_list
from posfeat.utils import get_logger

if TYPE_CHECKING:
    from posfeat.evaluation.eth.config import ETHConfig

log = get_logger(__name__)

#: pair lists a scene may bring (names relative to ``images/``, one ``nameA nameB`` per line)
PAIR_LIST_NAMES: tuple[str, ...] = ("pairs.txt", "image_pairs.txt", "match_list.txt")


def exhaustive_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """All pairs ``(names[i], names[j])``, i < j."""
    return list(itertools.combinations(names, 2))


def read_pairs(path: str | os.PathLike, names: Sequence[str]) -> list[tuple[str, str]]:
    """A scene's pair list (COLMAP's match list: ``nameA nameB`` per line, further fields ignored), through
    :func:`~posfeat.datasets.records.read_pair_list`: names relative to the scene's ``images/`` folder (an
    ``images/`` prefix is accepted), each an image of the scene, and at least one pair."""
    return read_pair_list(
        path,
        names,
        what="a pair list (nameA nameB)",
        known_as="an image of the scene",
        extra_fields=True,
        prefix="images/",
        nonempty=True,
    )


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
    images; otherwise retrieval pairs (:mod:`posfeat.sfm.retrieval`, needs ``get_descriptors(name)``).
    """
    listed = find_pair_list(scene_dir, cfg.pairs_file)
    if listed is not None:
        return read_pairs(listed, names), {"pairs": "pair_list", "pairs_file": str(listed)}
    if cfg.max_exhaustive_images is None or cfg.max_exhaustive_images <= 0 or len(names) <= cfg.max_exhaustive_images:
        return exhaustive_pairs(names), {"pairs": "exhaustive"}
    from posfeat.sfm.retrieval import bow_descriptors, nearest_neighbour_pairs

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


__all__ = ["PAIR_LIST_NAMES", "exhaustive_pairs", "read_pairs", "find_pair_list", "select_pairs"]
