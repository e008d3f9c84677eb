"""Stage-2 keypoint sampling: one proposal per ``grid_size``² cell of a score map, drawn from the cell's
softmax, then accepted with the sigmoid of its score (docs/method.md#stage-2-reinforce-loss). The log-probability
of each draw is what the REINFORCE gradient flows through.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class KeypointSamples:
    """Keypoints drawn from a score map, one proposal per cell.

    Attributes:
        xy: ``B×n×2`` float32 integer pixel coordinates ``(x, y)`` of the proposals (cells row-major).
        logp: ``B×n`` log-probability of the draw (proposal + acceptance); differentiable w.r.t. the scores.
        accepted: ``B×n`` bool.
        index: ``B×n`` int64 flat pixel index ``y·W + x``.
    """

    xy: torch.Tensor
    logp: torch.Tensor
    accepted: torch.Tensor
    index: torch.Tensor

    def detach(self) -> "KeypointSamples":
        return KeypointSamples(self.xy.detach(), self.logp.detach(), self.accepted.detach(), self.index.detach())


def _cells(score: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, int, int]:
    """``B×1×H×W`` → ``B×(nh·nw)×g²`` cell logits (row-major cells, row-major pixels within a cell)."""
    b, c, h, w = score.shape
    if c != 1:
        raise ValueError(f"score map must have one channel, got shape {tuple(score.shape)}")
    g = int(grid_size)
    nh, nw = h // g, w // g
    if g < 1 or nh < 1 or nw < 1:
        raise ValueError(f"grid_size {grid_size} does not fit a {w}x{h} score map")
    cells = score[:, 0, : nh * g, : nw * g].reshape(b, nh, g, nw, g).permute(0, 1, 3, 2, 4)
    return cells.reshape(b, nh * nw, g * g), nh, nw


def sample_keypoints(
    score: torch.Tensor, grid_size: int = 8, generator: torch.Generator | None = None
) -> KeypointSamples:
    """DISK-style sampling: per cell a ``Categorical(softmax(s_cell))`` proposal, ``Bernoulli(σ(s))`` acceptance.

    Args:
        score: ``B×1×H×W`` score map used directly as logits (float32 recommended).
        grid_size: cell size in pixels (8 in the paper).
        generator: random source (must live on ``score``'s device); ``None`` → torch's global RNG.

    Returns:
        :class:`KeypointSamples` with ``n = (H // g)·(W // g)`` proposals per image.
    """
    b, _, h, w = score.shape
    g = int(grid_size)
    logits, nh, nw = _cells(score, g)  # B×n×g²
    n = nh * nw
    log_prob = torch.log_softmax(logits, dim=-1)
    with torch.no_grad():
        choice = torch.multinomial(log_prob.detach().exp().reshape(b * n, g * g), 1, generator=generator).view(b, n)
    logit = logits.gather(-1, choice[..., None]).squeeze(-1)  # B×n, differentiable
    with torch.no_grad():
        u = torch.rand(b, n, generator=generator, device=score.device, dtype=score.dtype)
        accepted = u < torch.sigmoid(logit.detach())
    logp = log_prob.gather(-1, choice[..., None]).squeeze(-1) + torch.where(
        accepted, F.logsigmoid(logit), F.logsigmoid(-logit)
    )
    with torch.no_grad():
        cy = torch.arange(nh, device=score.device).view(1, nh, 1).expand(b, nh, nw).reshape(b, n)
        cx = torch.arange(nw, device=score.device).view(1, 1, nw).expand(b, nh, nw).reshape(b, n)
        x = cx * g + choice % g
        y = cy * g + torch.div(choice, g, rounding_mode="floor")
        xy = torch.stack([x, y], dim=-1).to(torch.float32)
        index = y * w + x
    return KeypointSamples(xy=xy, logp=logp, accepted=accepted, index=index)
