"""The history of a run: its per-step records, the logged rows, the counters, and the final metrics.

Each step adds one record (loss, statistics, learning rate, seconds). Every ``log_every`` steps the records
since the last row are averaged into a row (what DVCLive logs); the first and the last ``metrics_window``
records give the initial and final metrics. All of it travels in the resumable checkpoint (the step times too,
so the speed reported after a resume is the mean over every step, not over those of the last process), so a
resumed run logs and reports what an uninterrupted one does.
"""

from __future__ import annotations

import math

import numpy as np


class History:
    """Records, rows and counters of one run (see the module docstring)."""

    def __init__(self, window: int, log_every: int, total_steps: int):
        self.window, self.log_every, self.total_steps = int(window), int(log_every), int(total_steps)
        self.rows: list[dict] = []
        self.first_window: list[dict] = []
        self.recent: list[dict] = []
        self.pending: list[dict] = []
        self.counters = {"skipped_steps": 0, "skipped_samples": 0}
        self.times: list[float] = []

    def state(self) -> dict:
        """The checkpointed part (rows, first and last window, counters, records not yet logged)."""
        return {
            "rows": self.rows,
            "first_window": self.first_window,
            "recent": self.recent,
            "counters": self.counters,
            "pending": self.pending,
            "times": self.times,
        }

    def restore(self, state: dict) -> None:
        """Take over :meth:`state`'s entries from a checkpoint."""
        self.rows, self.first_window, self.recent = (
            list(state["rows"]),
            list(state["first_window"]),
            list(state["recent"]),
        )
        self.counters.update({k: int(v) for k, v in state["counters"].items()})
        self.pending = list(state.get("pending", []))
        self.times = [float(t) for t in state.get("times", [])]  # absent in checkpoints of older versions

    def add(self, step: int, loss: float, stats: dict, lr: float, seconds: float) -> dict | None:
        """Record one step; returns the new row when the step is a logging step (else ``None``)."""
        self.times.append(seconds)
        record = {"step": step, "loss": loss, **stats, "lr": lr, "seconds_per_step": seconds}
        record.pop("temperature", None)
        if len(self.first_window) < self.window:
            self.first_window.append(record)
        self.recent.append(record)
        del self.recent[: -self.window]
        self.pending.append(record)
        if step % self.log_every == 0 or step == self.total_steps:
            row = {"step": step, **window_mean(self.pending)}
            self.pending = []
            self.rows.append(row)
            return row
        return None

    def metrics(self, step: int, world_size: int, device: str, last_val: dict[str, float]) -> dict:
        """The run's final metrics: last-window means, first-window loss, speed, counters, validation."""
        final = window_mean(self.recent)
        initial = window_mean(self.first_window)
        metrics = {
            "steps": step,
            "loss": final.get("loss"),
            "loss_initial": initial.get("loss"),
            "components": {k: v for k, v in final.items() if k not in ("loss", "lr", "seconds_per_step")},
            "seconds_per_iteration": float(np.mean(self.times)) if self.times else None,
            "world_size": world_size,
            "device": device,
            **self.counters,
        }
        if last_val:
            metrics["val"] = {k.split("/", 1)[1]: v for k, v in last_val.items()}
        return metrics


def window_mean(records: list[dict]) -> dict[str, float]:
    """Per key (``step`` aside), the mean of the finite values that ``records`` hold for it."""
    keys = {k for r in records for k in r} - {"step"}
    out = {}
    for k in sorted(keys):
        vals = [r[k] for r in records if k in r and r[k] is not None and math.isfinite(r[k])]
        if vals:
            out[k] = float(np.mean(vals))
    return out
