"""Figures of the evaluations (matplotlib, headless: a bare ``Figure``, no pyplot state or backend switch)."""

from __future__ import annotations

import os

import matplotlib
from matplotlib.figure import Figure

from posfeat.io import atomic_path

PANELS = (("overall", "Overall"), ("illumination", "Illumination"), ("viewpoint", "Viewpoint"))
METHOD_LABELS = {
    "posfeat": "PoSFeat (its keypoints and descriptors)",
    "posfeat_sift": "PoSFeat descriptors on SIFT keypoints",
    "sift": "SIFT (OpenCV)",
    "rootsift": "RootSIFT (OpenCV)",
}
"""How the figure spells the study's method names; other names are shown as they are."""
STYLES = (("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1, 1, 1)), "v"))
"""Line style and marker per method, in order: the curves stay apart in greyscale print."""


def plot_mma_curves(
    results: dict,
    out_path: str | os.PathLike,
    max_threshold: int = 10,
    dataset: str = "HPatches",
    vector: str | None = "svg",
) -> None:
    """HPatches MMA vs threshold, one curve per method, in three panels (the paper's figure style:
    Overall | Illumination | Viewpoint, MMA in [0, 1] against 1..10 px, the legend in the first panel).

    Args:
        results: the output of :func:`posfeat.evaluation.hpatches.evaluate_hpatches`.
        out_path: PNG (or any format matplotlib infers from the suffix), written atomically.
        max_threshold: last threshold plotted (the paper shows 1..10 px).
        dataset: what the figure's title names (e.g. ``HPatches layout, demo world``).
        vector: also write a vector copy beside ``out_path`` in this format (``svg`` | ``pdf``; ``None``: none).
            The SVG carries no date and fixed element ids, so a rerun writes the same bytes.
    """
    if not results:
        raise ValueError("plot_mma_curves: no methods to plot")
    thresholds = list(range(1, max_threshold + 1))
    fig = Figure(figsize=(15, 4.8))
    axes = fig.subplots(1, 3)
    handles: dict = {}
    for ax, (split, title) in zip(axes, PANELS):
        for i, (method, r) in enumerate(results.items()):
            ys = [r[split].get(f"mma@{t}") for t in thresholds]
            if any(y is None for y in ys):
                continue  # the split has no pairs for this root
            style, marker = STYLES[i % len(STYLES)]
            (line,) = ax.plot(
                thresholds,
                ys,
                color=f"C{i % 10}",
                linestyle=style,
                marker=marker,
                markersize=5,
                linewidth=2,
                label=METHOD_LABELS.get(method, method),
            )
            handles.setdefault(method, line)
        ax.set_title(title)
        ax.set_xlabel("threshold [px]")
        ax.set_xlim(1, max_threshold)
        ax.set_ylim(0, 1)
        ax.set_xticks(thresholds)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean matching accuracy")
    if handles:  # one legend, in the first panel, as in the D2-Net / PoSFeat figure
        axes[0].legend(list(handles.values()), [h.get_label() for h in handles.values()], loc="lower right")
    fig.suptitle(f"{dataset}: mean matching accuracy (D2-Net protocol, mutual nearest neighbours)")
    fig.tight_layout()
    _save(fig, out_path)
    if vector:
        _save(fig, os.path.splitext(os.fspath(out_path))[0] + "." + vector)


def _save(fig: Figure, path: str | os.PathLike) -> None:
    """``fig`` to ``path`` atomically, in the format of its suffix, without a date in vector files."""
    suffix = os.path.splitext(os.fspath(path))[1] or ".png"
    metadata = {"Date": None} if suffix in (".svg", ".pdf") else None
    with matplotlib.rc_context({"svg.hashsalt": "posfeat", "svg.fonttype": "none"}):
        with atomic_path(path, suffix=suffix) as tmp:
            fig.savefig(tmp, dpi=120, metadata=metadata)
