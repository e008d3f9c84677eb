"""Headline metrics: the few numbers of each result that the study's DVC metrics hold, so that
``dvc metrics show`` and ``dvc metrics diff`` fit a screen. Full curves go to ``plots/``, the per-query and
per-scene detail to the result files under ``results/``.

* HPatches, per method: MMA at 1 and 3 px and the MMA score (overall);
* Aachen, per method: day and night recall at the benchmark's three thresholds (% of queries), or the share of
  queries localized when the query poses are withheld (the real benchmark);
* ETH, per method and scene: registered images, sparse points, mean track length, mean reprojection error and,
  where ground-truth cameras exist, the median rotation error;
* training: steps, final and initial loss, seconds per step, skipped samples (and the validation precision);
* the pair index: training and validation pairs, images, scenes.
"""

from __future__ import annotations

from typing import Mapping

AACHEN_THRESHOLDS: tuple[str, ...] = ("0.25m_2deg", "0.5m_5deg", "5m_10deg")

ETH_HEADLINE: dict[str, str] = {  # headline name: the statistic of evaluate_scene
    "registered_images": "num_reg_images",
    "points": "num_sparse_points",
    "track_length": "mean_track_length",
    "reprojection_error_px": "mean_reproj_error",
    "rotation_error_deg": "median_rotation_error_deg",
}


def _rounded(value, digits: int = 4):
    """``value`` rounded for display (ints and None unchanged)."""
    return round(float(value), digits) if isinstance(value, float) else value


def _present(mapping: Mapping, keys: Mapping[str, str]) -> dict:
    """``{name: mapping[key]}`` for every key present with a value (None left out)."""
    return {name: _rounded(mapping[key]) for name, key in keys.items() if mapping.get(key) is not None}


def hpatches_headline(result: Mapping) -> dict:
    """One method's HPatches result (:func:`~posfeat.evaluation.hpatches.evaluate_hpatches`) → MMA@1, @3, score."""
    overall = result["overall"]
    return _present(overall, {"mma@1": "mma@1", "mma@3": "mma@3", "mma_score": "mma_score"})


def aachen_headline(metrics: Mapping) -> dict:
    """One method's Aachen metrics → ``{day|night: {threshold: %}}`` (or ``{"localized_%": …}`` without
    ground truth)."""
    out = {}
    for condition in ("day", "night"):
        m = metrics.get(condition)
        if not m:
            continue
        recalls = _present(m, {t: t for t in AACHEN_THRESHOLDS})
        if recalls:
            out[condition] = recalls
        elif m.get("queries"):
            out[condition] = {"localized_%": round(100.0 * m["localized"] / m["queries"], 2)}
    return out


def eth_headline(stats: Mapping[str, Mapping]) -> dict:
    """One method's ETH statistics per scene → the headline statistics per scene."""
    return {scene: _present(s, ETH_HEADLINE) for scene, s in stats.items()}


def training_headline(metrics: Mapping) -> dict:
    """A training stage's summary (:func:`posfeat.training.train`) → its headline numbers."""
    keys = {k: k for k in ("steps", "loss", "loss_initial", "seconds_per_iteration", "skipped_samples")}
    out = _present(metrics, keys)
    precision = (metrics.get("val") or {}).get("precision")
    if precision is not None:
        out["val_precision"] = _rounded(precision)
    return out


def prepare_headline(report: Mapping) -> dict:
    """The pair index report (:func:`~posfeat.trainset.prepare.prepare_megadepth`) → pairs, images, scenes."""
    return _present(report, {k: k for k in ("scenes_kept", "images", "pairs_train", "pairs_val")})


__all__ = [
    "AACHEN_THRESHOLDS",
    "ETH_HEADLINE",
    "aachen_headline",
    "eth_headline",
    "hpatches_headline",
    "prepare_headline",
    "training_headline",
]
