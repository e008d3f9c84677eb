"""The DVCLive logger of a run: metrics rows and images on rank 0, rebuilt as it was on resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


class LiveLogger:
    """DVCLive on rank 0 (``dvcyaml=False``, no DVC experiment of its own); nothing elsewhere.

    On resume the directory is rebuilt: DVCLive clears its plots, the logged rows kept in the
    checkpoint are replayed, and the images up to the checkpoint's step are restored, so the logs
    equal those of an uninterrupted run.
    """

    def __init__(self, live_dir: Path | None, enabled: bool, rows: list[dict], resume_step: int):
        self.live = None
        if not enabled or live_dir is None:
            return
        from dvclive import Live

        img_dir = Path(live_dir) / "plots" / "images"
        keep = {}
        if resume_step > 0 and img_dir.is_dir():
            for p in img_dir.iterdir():
                try:
                    if p.is_file() and int(p.name.split("_", 1)[0]) <= resume_step:
                        keep[p.name] = p.read_bytes()
                except ValueError:
                    continue
        self.live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=False)
        img_dir.mkdir(parents=True, exist_ok=True)
        for name, data in keep.items():
            (img_dir / name).write_bytes(data)
        for row in rows:
            self._write(row)

    def _write(self, row: dict) -> None:
        """Log the finite values of ``row`` at its step, and rewrite the summary."""
        self.live.step = int(row["step"])
        for k, v in row.items():
            if k != "step" and v is not None and math.isfinite(v):
                self.live.log_metric(k, float(v))
        self.live.make_summary()

    def metrics(self, row: dict) -> None:
        """Log one row of metrics (rank 0 with a directory; nothing otherwise)."""
        if self.live is not None:
            self._write(row)

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """Log images under names that begin with the step (``0000012_pair0_matches.png``)."""
        if self.live is not None:
            for name, img in images.items():
                self.live.log_image(f"{step:07d}_{name}", img)

    def end(self) -> None:
        """Close the DVCLive run."""
        if self.live is not None:
            self.live.end()
