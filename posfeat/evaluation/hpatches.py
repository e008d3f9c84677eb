"""HPatches mean matching accuracy, the D2-Net protocol as PoSFeat evaluates it
(docs/method.md#hpatches-mean-matching-accuracy).

* Sequences: every ``i_*``/``v_*`` folder under the root, sorted, minus the exclusion list (D2-Net drops
  eight high-resolution sequences, leaving 52 + 56 = 108 on the full release).
* Pairs: image 1 against images 2..6 of each sequence.
* Matches: mutual nearest neighbours of the (unit) descriptors, dot-product similarity, no ratio test.
* Error of a match ``(a, b)``: ``‖π(H_1k·x̃_a) − x_b‖₂`` in pixels of image k.
* Per-pair precision at ``t``: the fraction of matches with error ``≤ t``; a pair without matches scores 0.
* ``MMA(t)``, ``t = 1..max_threshold``: mean per-pair precision over the pairs of a split (illumination,
  viewpoint) or over all pairs (overall).
* "MMA score": ``Σ_{t=1..10} (2 − t/10)·MMA(t) / 14.5`` (weights 1.9, 1.8, …, 1.0, normalised).
* ``features_per_image``: mean over all images; ``matches_per_pair``: mean over all pairs.

Unlike the original there is no cap at 60,000 features per image (extraction already caps them).
A split without pairs (e.g. a root holding only viewpoint sequences) gets ``null`` values.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from posfeat.datasets.hpatches import D2NET_EXCLUDE, list_sequences, load_sequence
from posfeat.feature_names import resolve_feature_names
from posfeat.geometry import apply_homography_np
from posfeat.io import DataError, FeatureReader, check_descriptor_dims
from posfeat.matching import match_descriptors
from posfeat.utils import announce, resolve_device

logger = logging.getLogger(__name__)

SPLITS = {"overall": ("i", "v"), "illumination": ("i",), "viewpoint": ("v",)}
SCORE_THRESHOLDS = tuple(range(1, 11))
SCORE_WEIGHTS = tuple(2.0 - t / 10.0 for t in SCORE_THRESHOLDS)  # 1.9 … 1.0, sum 14.5


@dataclass
class PairResults:
    """Per-pair and per-image raw results of one method (the equivalent of the original's cache)."""

    kinds: list[str] = field(default_factory=list)  # 'i' | 'v' per pair
    pairs: list[tuple[str, str]] = field(default_factory=list)
    precision: list[np.ndarray] = field(default_factory=list)  # per pair: (T,) precision at t = 1..T
    num_matches: list[int] = field(default_factory=list)
    num_features: list[int] = field(default_factory=list)  # per image, image 1 first in each sequence


def match_errors(kp_a: np.ndarray, kp_b: np.ndarray, matches: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Reprojection error (pixels of image b) of matches ``(M, 2)`` under the homography ``H`` (a → b)."""
    if len(matches) == 0:
        return np.zeros(0, np.float64)
    proj = apply_homography_np(H, np.asarray(kp_a, np.float64)[matches[:, 0]])
    return np.linalg.norm(proj - np.asarray(kp_b, np.float64)[matches[:, 1]], axis=1)


def pair_precision(errors: np.ndarray, max_threshold: int = 15) -> np.ndarray:
    """``(max_threshold,)`` fraction of errors ``≤ t`` for ``t = 1..max_threshold`` (zeros if no match)."""
    thresholds = np.arange(1, max_threshold + 1, dtype=np.float64)
    if len(errors) == 0:
        return np.zeros(max_threshold, np.float64)
    return (errors[None, :] <= thresholds[:, None]).mean(1)


def mma_score(mma: np.ndarray) -> float:
    """The weighted "MMA score" ``Σ_{t=1..10} (2 − t/10)·MMA(t) / 14.5`` from ``MMA(1..T)``, ``T ≥ 10``."""
    mma = np.asarray(mma, np.float64)
    if len(mma) < 10:
        raise ValueError(f"the MMA score needs MMA at thresholds 1..10, got {len(mma)} values")
    w = np.asarray(SCORE_WEIGHTS)
    return float((w * mma[:10]).sum() / w.sum())


def _get(reader: FeatureReader, name: str) -> dict[str, np.ndarray]:
    if name not in reader:
        raise DataError(f"{reader.path}: no features for image {name!r} (extract every HPatches image first)")
    f = reader[name]
    d = f["descriptors"]
    if d.ndim != 2 or d.shape[0] != len(f["keypoints"]):
        raise DataError(f"{reader.path}: image {name!r}: {len(f['keypoints'])} keypoints but descriptors {d.shape}")
    return f


def evaluate_pairs(
    root: str | os.PathLike,
    features: str | os.PathLike,
    sequences: list[str],
    max_threshold: int = 15,
    device="cpu",
    progress: bool = True,
    desc: str = "hpatches",
) -> PairResults:
    """Match every pair ``(1, k)`` of ``sequences`` with the features in ``features``; raw per-pair results."""
    res = PairResults()
    with FeatureReader(features) as reader:
        seqs = [load_sequence(root, name) for name in sequences]
        # names relative to the HPatches root, or to whatever folder above/below it was extracted
        keys = resolve_feature_names(
            reader.names(),
            [im for seq in seqs for im in seq.images],
            str(reader.path),
            "HPatches images",
            "(extract every HPatches image first)",
        )
        for seq in tqdm(seqs, desc=desc, unit="seq", disable=not progress):
            feats = [_get(reader, keys[im]) for im in seq.images]
            res.num_features.extend(len(f["keypoints"]) for f in feats)
            fa = feats[0]
            for k in range(2, len(seq.images) + 1):
                fb = feats[k - 1]
                check_descriptor_dims(
                    reader.path, fa["descriptors"], reader.path, fb["descriptors"], seq.images[0], seq.images[k - 1]
                )
                m = match_descriptors(fa["descriptors"], fb["descriptors"], mutual=True, device=device)
                err = match_errors(fa["keypoints"], fb["keypoints"], m, seq.homographies[k])
                res.kinds.append(seq.kind)
                res.pairs.append((seq.images[0], seq.images[k - 1]))
                res.precision.append(pair_precision(err, max_threshold))
                res.num_matches.append(len(m))
    return res


def summarize(res: PairResults, max_threshold: int = 15) -> dict:
    """The metrics of one method in the JSON layout of :func:`evaluate_hpatches`."""
    if not res.kinds:
        raise DataError("no HPatches pairs were evaluated")
    prec = np.stack(res.precision)  # P × T
    kinds = np.asarray(res.kinds)
    out: dict = {}
    for split, ks in SPLITS.items():
        sel = np.isin(kinds, ks)
        entry: dict = {}
        if sel.any():
            mma = prec[sel].mean(0)
            entry = {f"mma@{t}": float(mma[t - 1]) for t in range(1, max_threshold + 1)}
            entry["mma_score"] = mma_score(mma)
        else:
            entry = {f"mma@{t}": None for t in range(1, max_threshold + 1)}
            entry["mma_score"] = None
        out[split] = entry
    out["features_per_image"] = float(np.mean(res.num_features))
    out["matches_per_pair"] = float(np.mean(res.num_matches))
    return out


def evaluate_hpatches(
    root: str | os.PathLike,
    features: dict[str, str | os.PathLike],
    exclude=D2NET_EXCLUDE,
    max_threshold: int = 15,
    device="auto",
    progress: bool = True,
) -> dict:
    """HPatches MMA of several methods.

    Args:
        root: the ``hpatches-sequences-release`` folder (``<root>/<i_|v_name>/{1..6}.ppm, H_1_k``).
        features: ``{method: features.h5}`` with groups ``<seq>/<k>.<ext>`` (names relative to ``root``).
        exclude: sequences to drop (default: the D2-Net list); ``()`` keeps all.
        max_threshold: thresholds 1..max_threshold px (at least 10, for the MMA score).
        device: where the matcher runs.
        progress: tqdm bars.

    Returns:
        ``{method: {"overall"|"illumination"|"viewpoint": {"mma@1".."mma@T", "mma_score"},
        "features_per_image": x, "matches_per_pair": y}}``.
    """
    if max_threshold < 10:
        raise ValueError(f"max_threshold must be >= 10 (the MMA score uses 1..10), got {max_threshold}")
    dev = resolve_device(device)
    sequences = list_sequences(root, exclude)
    if not sequences:
        raise DataError(f"{root}: no HPatches sequences (i_*/v_*) left after the exclusion list")
    n_i = sum(s.startswith("i_") for s in sequences)
    announce(
        "eval-hpatches",
        dev,
        ", ".join(features),
        f"{len(sequences)} sequences ({n_i} i, "
        f"{len(sequences) - n_i} v) under {root}, {5 * len(sequences)} pairs per method",
    )
    results = {}
    for method, path in features.items():
        raw = evaluate_pairs(root, path, sequences, max_threshold, dev, progress, desc=f"hpatches {method}")
        results[method] = summarize(raw, max_threshold)
    return results


# ----------------------------------------------------------------------------------------- writers
def curves_frame(metrics: dict, max_threshold: int | None = None):
    """One method's MMA curve as a DataFrame: columns threshold, overall, illumination, viewpoint."""
    import pandas as pd

    if max_threshold is None:
        max_threshold = max(int(k.split("@")[1]) for k in metrics["overall"] if k.startswith("mma@"))
    rows = [{"threshold": t, **{s: metrics[s][f"mma@{t}"] for s in SPLITS}} for t in range(1, max_threshold + 1)]
    return pd.DataFrame(rows, columns=["threshold", *SPLITS])


def write_curves(results: dict, path: str | os.PathLike) -> Path:
    """Write every method's MMA curve to one CSV, atomically: columns method, threshold, overall, illumination,
    viewpoint (one row per method and threshold; what ``dvc plots`` draws, one line per method)."""
    import pandas as pd

    from posfeat.io import atomic_path

    frames = [curves_frame(metrics).assign(method=method) for method, metrics in results.items()]
    table = pd.concat(frames, ignore_index=True)[["method", "threshold", *SPLITS]]
    path = Path(path)
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    return path


def format_table(results: dict) -> str:
    """A markdown summary: MMA@1/2/3/5/10 overall, MMA scores, features and matches."""
    head = "| method | @1 | @2 | @3 | @5 | @10 | score all | score i | score v | #feat/img | #match/pair |"
    lines = [head, "|" + "---|" * 11]

    def f(x):
        return "–" if x is None else f"{x:.3f}"

    for m, r in results.items():
        o = r["overall"]
        lines.append(
            f"| {m} | "
            + " | ".join(f(o[f"mma@{t}"]) for t in (1, 2, 3, 5, 10))
            + f" | {f(o['mma_score'])} | {f(r['illumination']['mma_score'])} | {f(r['viewpoint']['mma_score'])}"
            + f" | {r['features_per_image']:.1f} | {r['matches_per_pair']:.1f} |"
        )
    return "\n".join(lines)
