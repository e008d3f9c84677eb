"""What the Aachen Day-Night benchmark scores and receives: the localization recall per condition, the
submission file, and the text table of the metrics (docs/method.md#aachen-day-night-localization).

The recall at (0.25 m, 2°), (0.5 m, 5°) and (5 m, 10°) is in percent like the benchmark's site: position
error = distance of the camera centres, rotation error = angle of ``R_est·R_gtᵀ``
(:func:`posfeat.evaluation.poses.pose_error`). The submission file ``basename qw qx qy qz tx ty tz``
(world→camera, COLMAP convention) lists every query.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from posfeat.datasets.aachen import read_ground_truth
from posfeat.evaluation.aachen.localize import QueryResult
from posfeat.evaluation.poses import pose_error
from posfeat.io import DataError, atomic_path, write_json

#: (position in metres, rotation in degrees) thresholds of the benchmark, and their metric keys.
THRESHOLDS: tuple[tuple[float, float], ...] = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))
CONDITIONS = ("day", "night")


def threshold_key(position_m: float, rotation_deg: float) -> str:
    """Metric key of a threshold pair, e.g. ``(0.25, 2) → "0.25m_2deg"``."""
    return f"{position_m:g}m_{rotation_deg:g}deg"


def localization_recall(
    results: Sequence[QueryResult],
    ground_truth: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
    thresholds: Sequence[tuple[float, float]] = THRESHOLDS,
) -> dict:
    """Metrics per condition: recall (percent of the condition's queries) at each threshold, counts.

    Returns ``{day|night: {"0.25m_2deg": %, "0.5m_5deg": %, "5m_10deg": %, "localized": n, "queries": n},
    "localized": n, "queries": n}``; the recall keys only when ``ground_truth`` is given (every query
    must then have a ground-truth pose). The submitted pose is scored, whether localized or fallback.
    """
    out: dict = {}
    for cond in CONDITIONS:
        rs = [r for r in results if r.condition == cond]
        if not rs:
            continue
        m: dict = {}
        if ground_truth is not None:
            missing = [r.name for r in rs if r.name not in ground_truth]
            if missing:
                raise DataError(f"no ground-truth pose for {len(missing)} {cond} queries, e.g. {missing[:3]}")
            errs = np.array([pose_error(r.qvec, r.tvec, *ground_truth[r.name]) for r in rs]).reshape(-1, 2)
            for dt, dr in thresholds:
                ok = (errs[:, 0] <= dt) & (errs[:, 1] <= dr)
                m[threshold_key(dt, dr)] = round(100.0 * float(ok.mean()), 3)
        m["localized"] = int(sum(r.localized for r in rs))
        m["queries"] = len(rs)
        out[cond] = m
    out["localized"] = int(sum(r.localized for r in results))
    out["queries"] = len(results)
    return out


def write_submission(path: str | os.PathLike, results: Iterable[QueryResult]) -> int:
    """Write ``basename qw qx qy qz tx ty tz`` per query (the benchmark's format), atomically.

    Returns the number of lines. Basenames must be unique (the benchmark identifies queries by them).
    """
    lines, seen = [], {}
    for r in results:
        base = Path(r.name).name
        if base in seen:
            raise DataError(
                f"queries {seen[base]!r} and {r.name!r} share the basename {base!r}; "
                "the submission cannot tell them apart"
            )
        seen[base] = r.name
        q = np.asarray(r.qvec, float)
        q = q / np.linalg.norm(q)
        lines.append(base + " " + " ".join(f"{v:.10g}" for v in (*q, *np.asarray(r.tvec, float).reshape(3))))
    with atomic_path(path, suffix=".txt") as tmp:
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def query_records(queries: Iterable[QueryResult]) -> list[dict]:
    """Per-query outcome as JSON records: name, condition, localized, correspondences, inliers, pose."""
    return [
        {
            "name": r.name,
            "condition": r.condition,
            "localized": r.localized,
            "correspondences": r.num_correspondences,
            "inliers": r.num_inliers,
            "qvec": [float(v) for v in r.qvec],
            "tvec": [float(v) for v in r.tvec],
        }
        for r in queries
    ]


def write_results(out_dir: str | os.PathLike, name: str, result) -> None:
    """The results of one method's localization (an :class:`~posfeat.evaluation.aachen.evaluate.AachenResult`):
    ``<out_dir>/<name>.txt``, the benchmark's submission file, and ``<out_dir>/<name>.json``, the metrics,
    timings, counts and every query's outcome. The DVC stage and ``posfeat eval-aachen`` both write these."""
    out_dir = Path(out_dir)
    write_submission(out_dir / f"{name}.txt", result.queries)
    detail = {
        "metrics": result.metrics,
        "timings_s": result.timings,
        "stats": result.stats,
        "queries": query_records(result.queries),
    }
    write_json(out_dir / f"{name}.json", detail)


def read_submission(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a submission file → ``{basename: (qvec, tvec)}`` (validated like the ground truth)."""
    return read_ground_truth(path)


def format_metrics(metrics: Mapping[str, Mapping]) -> str:
    """A text table of ``{method: metrics}``."""
    keys = [threshold_key(*t) for t in THRESHOLDS]
    lines = [f"{'method':<16}{'cond':<7}" + "".join(f"{k:>12}" for k in keys) + f"{'localized':>12}"]
    for method, m in metrics.items():
        for cond in CONDITIONS:
            if cond in m:
                c = m[cond]
                vals = "".join(f"{c[k]:>12.1f}" if k in c else f"{'-':>12}" for k in keys)
                lines.append(f"{method:<16}{cond:<7}{vals}{c['localized']:>8d}/{c['queries']:<3d}")
    return "\n".join(lines)


__all__ = [
    "THRESHOLDS",
    "CONDITIONS",
    "threshold_key",
    "localization_recall",
    "write_submission",
    "read_submission",
    "format_metrics",
]
