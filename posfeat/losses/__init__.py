"""PoSFeat's two decoupled training losses: stage-1 line-to-window (descriptor), stage-2 REINFORCE (detector)."""

from .line2window import (
    Line2WindowLoss,
    draw_jitter,
    epipolar_endpoints,
    line2window_parts,
    line2window_terms,
    sample_grid_points,
)
from .reinforce import (
    KeypointSamples,
    ReinforceLoss,
    reinforce_terms,
    sample_keypoints,
)

__all__ = [
    "KeypointSamples",
    "Line2WindowLoss",
    "ReinforceLoss",
    "draw_jitter",
    "epipolar_endpoints",
    "line2window_parts",
    "line2window_terms",
    "reinforce_terms",
    "sample_grid_points",
    "sample_keypoints",
]
