"""Figures of the evaluations (matplotlib, headless: a bare ``Figure``, no pyplot state or backend switch)."""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from posfeat.io import atomic_path

PANELS = (("overall", "Overall"), ("illumination", "Illumination"), ("viewpoint", "Viewpoint"))
LINESTYLES = ("-", "--", "-.", ":")


def plot_mma_curves(results: dict, out_path: str | os.PathLike, max_threshold: int = 10) -> None:
    """HPatches MMA vs threshold, one curve per method, in three panels (the paper's figure style:
    Overall | Illumination | Viewpoint, MMA in [0, 1] against 1..10 px, the legend in the first panel).

    Args:
        results: the output of :func:`posfeat.evaluation.hpatches.evaluate_hpatches`.
        out_path: PNG (or any format matplotlib infers from the suffix), written atomically.
        max_threshold: last threshold plotted (the paper shows 1..10 px).
    """
    if not results:
        raise ValueError("plot_mma_curves: no methods to plot")
    thresholds = list(range(1, max_threshold + 1))
    fig = Figure(figsize=(15, 4.4))
    axes = fig.subplots(1, 3)
    handles: dict = {}
    for ax, (split, title) in zip(axes, PANELS):
        for i, (method, r) in enumerate(results.items()):
            ys = [r[split].get(f"mma@{t}") for t in thresholds]
            if any(y is None for y in ys):
                continue  # the split has no pairs for this root
            (line,) = ax.plot(
                thresholds, ys, color=f"C{i % 10}", linestyle=LINESTYLES[(i // 10) % len(LINESTYLES)],
                linewidth=2, label=method,
            )
            handles.setdefault(method, line)
        ax.set_title(title)
        ax.set_xlabel("threshold [px]")
        ax.set_xlim(1, max_threshold)
        ax.set_ylim(0, 1)
        ax.set_xticks(thresholds)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MMA")
    if handles:  # one legend, in the first panel, as in the D2-Net / PoSFeat figure
        axes[0].legend(list(handles.values()), list(handles), loc="lower right")
    fig.tight_layout()
    suffix = os.path.splitext(os.fspath(out_path))[1] or ".png"
    with atomic_path(out_path, suffix=suffix) as tmp:
        fig.savefig(tmp, dpi=120)
