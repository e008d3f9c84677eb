"""The settings of the two losses, each passed as one object through every function of its loss.

:class:`WindowSearch` (stage 1, line-to-window) and :class:`RewardSettings` (stage 2, REINFORCE); the loss
modules hold one, and ``Line2WindowLoss(**settings)`` / ``ReinforceLoss(**settings)`` build it from keywords.
The defaults are the paper's (docs/method.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


def _coerce(obj, types: dict[str, type]) -> None:
    """Cast the fields of a frozen dataclass to their declared Python types (a YAML ``60`` becomes ``60.0``)."""
    for f in fields(obj):
        object.__setattr__(obj, f.name, types[f.name](getattr(obj, f.name)))


@dataclass(frozen=True)
class WindowSearch:
    """Stage 1: the epipolar line search and the window soft-argmax (docs/method.md#stage-1-line-to-window-loss)."""

    line_step: int = 100  # points placed on each clipped epipolar line
    window_size: float = 0.1  # half-size of the soft-argmax window, normalised units
    temperature: float = 60.0  # multiplies the cosine similarities before the softmax
    win_cost_thr: float = 0.1  # a query enters the loss when its epipolar cost < this × min(W, H) px
    stable_sigma: bool = False  # centred variance for σ instead of the original's Σp·c² − ĉ²

    def __post_init__(self):
        _coerce(
            self,
            {"line_step": int, "window_size": float, "temperature": float, "win_cost_thr": float, "stable_sigma": bool},
        )


@dataclass(frozen=True)
class RewardSettings:
    """Stage 2: the dual-softmax matching and the epipolar reward (docs/method.md#stage-2-reinforce-loss)."""

    temperature: float = 60.0  # dual-softmax temperature on cosine similarities
    reward_thr: float = 2.0  # px, both directions: a match within it is good
    good_reward: float = 1.0
    bad_reward: float = -0.25
    kp_penalty: float = 1e-3  # weight of Σ_accepted logp added to the loss

    def __post_init__(self):
        _coerce(self, {f.name: float for f in fields(self)})
