"""PoSFeat's two decoupled training losses: stage-1 line-to-window (descriptor), stage-2 REINFORCE (detector)."""

from .epipolar_search import draw_jitter, epipolar_endpoints, sample_grid_points
from .keypoint_sampling import KeypointSamples, sample_keypoints
from .line2window import Line2WindowLoss, line2window_parts, line2window_terms
from .reinforce import ReinforceLoss, reinforce_terms

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
