"""What the ETH benchmark reports: one scene's result (:class:`SceneResult`) and the text table of many."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from posfeat.io import write_json


@dataclass
class SceneResult:
    """What :func:`posfeat.evaluation.eth.evaluate.evaluate_scene` returns: statistics, timings and a message."""

    scene: str
    stats: dict[str, float | int | None]
    timings: dict[str, float] = field(default_factory=dict)
    message: str = "ok"
    model_path: str | None = None

    def to_dict(self) -> dict:
        """The result as one flat mapping (the statistics next to the scene, timings, message and model)."""
        return {
            "scene": self.scene,
            **self.stats,
            "timings_s": self.timings,
            "message": self.message,
            "model": self.model_path,
        }


def write_results(
    path: str | os.PathLike, results: Iterable[SceneResult], base_dir: str | os.PathLike | None = None
) -> dict:
    """Write ``{scene: result}`` (:meth:`SceneResult.to_dict`) to the JSON file ``path`` and return it; a model
    folder below ``base_dir`` is written relative to it, so the file stays valid when the folder moves. The DVC
    stage and ``posfeat eval-eth`` both write their results with it."""
    details = {}
    for res in results:
        d = res.to_dict()
        model = d.get("model")
        if model is not None and base_dir is not None:
            below = Path(model).is_relative_to(base_dir)
            d["model"] = str(Path(model).relative_to(base_dir)) if below else str(model)
        details[res.scene] = d
    write_json(path, details)
    return details


#: the statistics :func:`format_table` shows, in its column order
STAT_COLUMNS = (
    "num_reg_images",
    "num_sparse_points",
    "num_observations",
    "mean_track_length",
    "num_observations_per_image",
    "mean_reproj_error",
    "median_rotation_error_deg",
    "median_center_error",
    "pose_auc@5",
    "pose_auc@10",
    "pose_auc@20",
)


def format_table(results: dict[str, dict[str, dict]]) -> str:
    """Text table of ``{method: {scene: stats}}``."""
    short = {
        "num_reg_images": "reg",
        "num_sparse_points": "points",
        "num_observations": "obs",
        "mean_track_length": "track",
        "num_observations_per_image": "obs/img",
        "mean_reproj_error": "reproj",
        "median_rotation_error_deg": "rot°",
        "median_center_error": "centre",
        "pose_auc@5": "auc5",
        "pose_auc@10": "auc10",
        "pose_auc@20": "auc20",
    }
    lines = [f"{'method':<10}{'scene':<16}" + "".join(f"{short[c]:>9}" for c in STAT_COLUMNS)]
    for method, per_scene in results.items():
        for scene, s in per_scene.items():
            cells = []
            for c in STAT_COLUMNS:
                v = s.get(c)
                cells.append(f"{'-':>9}" if v is None else (f"{v:>9d}" if isinstance(v, int) else f"{v:>9.3f}"))
            lines.append(f"{method:<10}{scene:<16}" + "".join(cells))
    return "\n".join(lines)


__all__ = ["SceneResult", "STAT_COLUMNS", "format_table"]
