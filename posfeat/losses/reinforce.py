"""Stage-2 detector loss: DISK-style REINFORCE with an epipolar reward (docs/method.md#stage-2-reinforce-detector-loss).

The frozen backbone gives descriptor maps, the detector a full-resolution score map ``s ≥ 0`` per image.

1. **sampling** (:func:`sample_keypoints`): ``s`` is cut into ``grid_size×grid_size`` cells (a remainder
   that does not fill a cell is dropped, as ``unfold`` does). In each cell a pixel ``j`` is proposed with
   ``Categorical(softmax(s_cell))`` and accepted with ``Bernoulli(σ(s_j))``;
   ``logp = log softmax(s_cell)[j] + (log σ(s_j) if accepted else log(1 − σ(s_j)))`` carries the gradient.
   Keypoints are the integer pixels (no sub-pixel offset).
2. **matching** (no gradient): descriptors ``f = normalize(bilinear(local_map, kp))`` (the convention of
   :func:`posfeat.geometry.sample_feature_map`); the dual-softmax ``p_ij = softmax_j(T·f1·f2) ·
   softmax_i(T·f1·f2)`` over *all* proposals, and ``logp^m_ij = log_softmax_j + log_softmax_i``.
3. **reward** (no gradient): ``r_ij = good_reward`` if ``d(x2_j, F12·x1_i) < reward_thr`` and
   ``d(x1_i, F21·x2_j) < reward_thr`` (pixels, both directions), else ``bad_reward``.
4. **objective**, summed over the pairs of the batch (no normalisation, as the original), with
   ``A_ij = a1_i·a2_j`` (both accepted)::

       reinforce  = Σ_ij A_ij r_ij p_ij (logp^m_ij + logp1_i + logp2_j)
       kp_penalty = kp_penalty_weight · (Σ_i a1_i logp1_i + Σ_j a2_j logp2_j)
       loss       = −reinforce + kp_penalty

   Only ``logp1``/``logp2`` carry gradient, so ``reinforce = const + Σ_i W1_i logp1_i + Σ_j W2_j logp2_j``
   with ``W1_i = a1_i Σ_j a2_j r_ij p_ij`` and ``W2_j = a2_j Σ_i a1_i r_ij p_ij``. The fast loss computes the
   O(n) weights and the constant row-block-wise under ``no_grad`` (two passes: the log-sum-exps over all
   proposals, then the accepted×accepted block) and back-propagates through ``Σ W·logp`` only, so no
   ``n×n`` tensor ever enters the autograd graph. Its value *and* gradient equal those of the dense
   formulation (:func:`reinforce_dense_reference`, which builds the ``B×n×n`` tensors with autograd).

API (what the trainer calls)::

    loss_fn = ReinforceLoss(grid_size=8, temperature=60, reward_thr=2, good_reward=1, bad_reward=-0.25,
                            kp_penalty=1e-3, block_size=1024)
    res = loss_fn.terms(score1, score2, fmap1, fmap2, F12, F21, image_size=(W, H), generator=gen)
    res["loss"].backward()          # differentiable scalar, summed over the B pairs
    res["stats"]                    # dict of per-batch scalar tensors (see below), detached
    res["samples1"], res["samples2"]  # the drawn KeypointSamples (detached copies), for visualisation
    loss, stats = loss_fn(score1, score2, fmap1, fmap2, F12, F21, image_size=(W, H), generator=gen)

``score*``: ``B×1×H×W`` detector outputs (full resolution); ``fmap*``: ``B×D×Hf×Wf`` backbone
``local_map`` (raw, gradient-free); ``F12``/``F21``: ``B×3×3`` (``F12`` maps image-1 pixels to lines in
image 2); ``image_size`` ``(W, H)`` must equal the score maps' size. Draw order from ``generator``:
proposals of image 1, acceptances of image 1, proposals of image 2, acceptances of image 2.

Stats (means over the pairs of the batch unless said otherwise): ``loss``, ``reinforce``, ``kp_penalty``
(the penalty term as added to the loss), ``n_proposals`` (cells per image), ``n_kps`` (accepted keypoints
per image), ``accept_rate``, ``n_pairs`` (``Σ_A p``: expected number of matches between accepted
keypoints), ``n_good`` (``Σ_A p·[good]``), ``precision`` (``n_good / n_pairs``; 0 when no pairs),
``good_fraction`` (fraction of accepted×accepted pairs that are good), ``temperature``, and (from
:meth:`ReinforceLoss.terms` only) ``score_mean``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..geometry import epipolar_distance_matrix, sample_feature_map
from .keypoint_sampling import KeypointSamples, sample_keypoints
from .params import RewardSettings


# -------------------------------------------------------------------------------------------- helpers
def _descriptors(fmap: torch.Tensor, xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    with torch.no_grad():
        return sample_feature_map(fmap.detach().float(), xy, image_size, normalize=True)


def _reward(
    x1: torch.Tensor, x2: torch.Tensor, F12: torch.Tensor, F21: torch.Tensor, reward: RewardSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r, good_mask)`` for all pairs ``(i, j)`` of ``x1`` (``n1×2``) and ``x2`` (``n2×2``): ``n1×n2``."""
    d12 = epipolar_distance_matrix(x1, x2, F12)  # distance of x2_j from F12 x1_i (image 2)
    d21 = epipolar_distance_matrix(x2, x1, F21).transpose(-1, -2)  # distance of x1_i from F21 x2_j (image 1)
    ok = (d12 < reward.reward_thr) & (d21 < reward.reward_thr)
    return torch.where(ok, torch.full_like(d12, reward.good_reward), torch.full_like(d12, reward.bad_reward)), ok


def _check_inputs(score1, score2, fmap1, fmap2, F12, F21, image_size) -> tuple[int, int]:
    if score1.ndim != 4 or score1.shape != score2.shape or score1.shape[1] != 1:
        raise ValueError(
            f"score maps must be B×1×H×W of equal shape, got {tuple(score1.shape)} and {tuple(score2.shape)}"
        )
    b = score1.shape[0]
    if fmap1.ndim != 4 or fmap1.shape != fmap2.shape or fmap1.shape[0] != b:
        raise ValueError(
            f"fmap1/fmap2 must be B×D×Hf×Wf of equal shape with B={b}, "
            f"got {tuple(fmap1.shape)} and {tuple(fmap2.shape)}"
        )
    for name, fm in (("F12", F12), ("F21", F21)):
        if tuple(fm.shape) != (b, 3, 3):
            raise ValueError(f"{name} must be {b}×3×3, got {tuple(fm.shape)}")
    width, height = int(image_size[0]), int(image_size[1])
    if (height, width) != tuple(score1.shape[-2:]):
        raise ValueError(
            f"image_size {(width, height)} (W, H) does not match the score maps' size {tuple(score1.shape[-2:][::-1])}"
        )
    return width, height


def _finish_stats(per_pair: list[dict[str, torch.Tensor]], n_props: int, temperature: float) -> dict:
    keys = per_pair[0].keys()
    mean = {k: torch.stack([p[k] for p in per_pair]).float().mean() for k in keys}
    n_pairs, n_good = mean["n_pairs"], mean["n_good"]
    mean["precision"] = torch.where(n_pairs > 0, n_good / n_pairs.clamp_min(1e-12), torch.zeros_like(n_pairs))
    mean["n_proposals"] = torch.tensor(float(n_props))
    mean["accept_rate"] = mean["n_kps"] / max(n_props, 1)
    mean["temperature"] = torch.tensor(float(temperature))
    return mean


# -------------------------------------------------------------------------------- fast O(n) objective
@torch.no_grad()
def _pair_weights(
    d1: torch.Tensor,
    d2: torch.Tensor,
    x1: torch.Tensor,
    x2: torch.Tensor,
    a1: torch.Tensor,
    a2: torch.Tensor,
    F12: torch.Tensor,
    F21: torch.Tensor,
    reward: RewardSettings,
    block_size: int,
) -> dict[str, torch.Tensor]:
    """One pair: O(n) weights ``W1`` (``n1``), ``W2`` (``n2``), the constant ``Σ A r p logp^m`` and stats.

    Pass 1 (all proposals, row blocks): row log-sum-exp and column log-sum-exp (log-add-exp across blocks)
    of ``T·d1·d2ᵀ``. Pass 2 (accepted rows × accepted columns only): ``p``, ``r`` and the sums.
    """
    n1, n2 = d1.shape[0], d2.shape[0]
    dev = d1.device
    temperature = reward.temperature
    row_lse = torch.empty(n1, device=dev)
    col_lse = torch.full((n2,), float("-inf"), device=dev)
    for s in range(0, n1, block_size):
        aff = temperature * (d1[s : s + block_size] @ d2.T)
        row_lse[s : s + block_size] = torch.logsumexp(aff, dim=1)
        col_lse = torch.logaddexp(col_lse, torch.logsumexp(aff, dim=0))
    W1 = torch.zeros(n1, device=dev)
    W2 = torch.zeros(n2, device=dev)
    const = torch.zeros((), device=dev)
    n_pairs = torch.zeros((), device=dev)
    n_good = torch.zeros((), device=dev)
    good_count = torch.zeros((), device=dev)
    rows = torch.nonzero(a1).squeeze(1)
    cols = torch.nonzero(a2).squeeze(1)
    if rows.numel() and cols.numel():
        d2a, x2a, cl = d2[cols], x2[cols], col_lse[cols]
        for s in range(0, rows.numel(), block_size):
            ri = rows[s : s + block_size]
            aff = temperature * (d1[ri] @ d2a.T)
            logp_m = (aff - row_lse[ri, None]) + (aff - cl[None, :])
            p = logp_m.exp()
            r, ok = _reward(x1[ri], x2a, F12, F21, reward)
            rp = r * p
            W1[ri] = rp.sum(1)
            W2[cols] += rp.sum(0)
            const = const + (rp * logp_m).sum()
            n_pairs = n_pairs + p.sum()
            n_good = n_good + (p * ok).sum()
            good_count = good_count + ok.sum()
    n_ab = rows.numel() * cols.numel()
    return {
        "W1": W1,
        "W2": W2,
        "const": const,
        "n_pairs": n_pairs,
        "n_good": n_good,
        "good_fraction": good_count / max(n_ab, 1),
    }


def _pair_loss(
    w: dict, lp1: torch.Tensor, lp2: torch.Tensor, acc1: torch.Tensor, acc2: torch.Tensor, kp_penalty: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One pair's loss ``penalty − (const + Σ W·logp)`` from its :func:`_pair_weights` ``w`` and the samples'
    log-probabilities and acceptances, with its detached statistics."""
    a1, a2 = acc1.to(lp1.dtype), acc2.to(lp2.dtype)
    surrogate = (w["W1"] * lp1).sum() + (w["W2"] * lp2).sum()
    reinforce = w["const"] + surrogate
    penalty = kp_penalty * ((a1 * lp1).sum() + (a2 * lp2).sum())
    loss = penalty - reinforce
    stats = {
        "loss": loss.detach(),
        "reinforce": reinforce.detach(),
        "kp_penalty": penalty.detach(),
        "n_kps": (a1.sum() + a2.sum()).detach() / 2,
        "n_pairs": w["n_pairs"],
        "n_good": w["n_good"],
        "good_fraction": w["good_fraction"],
    }
    return loss, stats


def reinforce_terms(
    samples1: KeypointSamples,
    samples2: KeypointSamples,
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    F12: torch.Tensor,
    F21: torch.Tensor,
    image_size: tuple[int, int],
    *,
    reward: RewardSettings = RewardSettings(),
    block_size: int = 1024,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The stage-2 loss for given samples, O(n) in the autograd graph: ``(loss, stats)``.

    ``loss`` is summed over the ``B`` pairs; its value and gradient (w.r.t. ``samples*.logp``) equal
    :func:`reinforce_dense_reference`'s. ``stats`` as in the module docstring (without ``score_mean``).
    """
    width, height = int(image_size[0]), int(image_size[1])
    b = samples1.xy.shape[0]
    x1_all, x2_all = samples1.xy.float(), samples2.xy.float()
    desc1 = _descriptors(fmap1, x1_all, (width, height))
    desc2 = _descriptors(fmap2, x2_all, (width, height))
    lp1, lp2 = samples1.logp.float(), samples2.logp.float()
    a1_all, a2_all = samples1.accepted, samples2.accepted
    total = lp1.new_zeros(())
    per_pair = []
    for k in range(b):
        w = _pair_weights(
            desc1[k],
            desc2[k],
            x1_all[k],
            x2_all[k],
            a1_all[k],
            a2_all[k],
            F12[k].float(),
            F21[k].float(),
            reward,
            int(block_size),
        )
        loss_k, stats_k = _pair_loss(w, lp1[k], lp2[k], a1_all[k], a2_all[k], reward.kp_penalty)
        total = total + loss_k
        per_pair.append(stats_k)
    n_props = samples1.xy.shape[1]
    return total, _finish_stats(per_pair, n_props, reward.temperature)


# ------------------------------------------------------------------------------- dense reference
def reinforce_dense_reference(
    samples1: KeypointSamples,
    samples2: KeypointSamples,
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    F12: torch.Tensor,
    F21: torch.Tensor,
    image_size: tuple[int, int],
    *,
    reward: RewardSettings = RewardSettings(),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The original's dense formulation (``B×n×n`` tensors in the autograd graph): ``(loss, stats)``; what
    ``ReinforceLoss(impl="dense")`` runs, to check and measure the fast formulation against."""
    width, height = int(image_size[0]), int(image_size[1])
    x1, x2 = samples1.xy.float(), samples2.xy.float()
    desc1 = _descriptors(fmap1, x1, (width, height))
    desc2 = _descriptors(fmap2, x2, (width, height))
    with torch.no_grad():
        aff = reward.temperature * torch.bmm(desc1, desc2.transpose(1, 2))  # B×n1×n2
        logp_m = torch.log_softmax(aff, dim=2) + torch.log_softmax(aff, dim=1)
        p = logp_m.exp()
        r, ok = _reward(x1, x2, F12.float(), F21.float(), reward)
    lp1, lp2 = samples1.logp.float(), samples2.logp.float()
    a1, a2 = samples1.accepted, samples2.accepted
    A = (a1[:, :, None] & a2[:, None, :]).to(lp1.dtype)
    sample_lp = lp1[:, :, None] + lp2[:, None, :]  # B×n1×n2, in the graph
    reinforce = (A * r * p * (logp_m + sample_lp)).sum((1, 2))  # per pair
    penalty = reward.kp_penalty * ((a1 * lp1).sum(1) + (a2 * lp2).sum(1))
    loss_b = penalty - reinforce
    with torch.no_grad():
        n_ab = A.sum((1, 2))
        per_pair = [
            {
                "loss": loss_b[k].detach(),
                "reinforce": reinforce[k].detach(),
                "kp_penalty": penalty[k].detach(),
                "n_kps": (a1[k].sum() + a2[k].sum()).float() / 2,
                "n_pairs": (A[k] * p[k]).sum(),
                "n_good": (A[k] * p[k] * ok[k]).sum(),
                "good_fraction": (A[k] * ok[k]).sum() / n_ab[k].clamp_min(1),
            }
            for k in range(x1.shape[0])
        ]
    return loss_b.sum(), _finish_stats(per_pair, x1.shape[1], reward.temperature)


# ------------------------------------------------------------------------------------------- module
class ReinforceLoss(nn.Module):
    """Stage-2 loss (fast O(n)-gradient formulation); draws the keypoints from ``generator``.

    Args:
        grid_size: sampling cell in pixels (8).
        block_size: rows per block of the no-grad similarity passes (memory ``≈ block·n`` floats).
        settings: :class:`~posfeat.losses.params.RewardSettings`'s keywords (``temperature``, ``reward_thr``,
            ``good_reward``, ``bad_reward``, ``kp_penalty``), held as ``self.reward``.
    """

    def __init__(self, grid_size: int = 8, block_size: int = 1024, **settings):
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.grid_size = int(grid_size)
        self.block_size = int(block_size)
        self.reward = RewardSettings(**settings)

    def terms(
        self,
        score1: torch.Tensor,
        score2: torch.Tensor,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        F12: torch.Tensor,
        F21: torch.Tensor,
        image_size: tuple[int, int],
        generator: torch.Generator | None = None,
        samples1: KeypointSamples | None = None,
        samples2: KeypointSamples | None = None,
        impl: str = "fast",
    ) -> dict:
        """``{"loss", "stats", "samples1", "samples2"}`` for one batch (see the module docstring).

        ``samples1``/``samples2`` bypass the sampling (they must come from :func:`sample_keypoints` on
        these score maps for the gradient to reach them). ``impl="dense"`` uses the reference.
        """
        if impl not in ("fast", "dense"):
            raise ValueError(f"impl must be 'fast' or 'dense', got {impl!r}")
        width, height = _check_inputs(score1, score2, fmap1, fmap2, F12, F21, image_size)
        with torch.autocast(device_type=score1.device.type, enabled=False):
            s1, s2 = score1.float(), score2.float()
            if samples1 is None:
                samples1 = sample_keypoints(s1, self.grid_size, generator)
            if samples2 is None:
                samples2 = sample_keypoints(s2, self.grid_size, generator)
            if impl == "fast":
                loss, stats = reinforce_terms(
                    samples1,
                    samples2,
                    fmap1,
                    fmap2,
                    F12,
                    F21,
                    (width, height),
                    reward=self.reward,
                    block_size=self.block_size,
                )
            else:
                loss, stats = reinforce_dense_reference(
                    samples1, samples2, fmap1, fmap2, F12, F21, (width, height), reward=self.reward
                )
            stats["score_mean"] = ((s1.mean() + s2.mean()) / 2).detach()
        return {"loss": loss, "stats": stats, "samples1": samples1.detach(), "samples2": samples2.detach()}

    def forward(self, score1, score2, fmap1, fmap2, F12, F21, image_size, generator=None, **kw):
        """``(loss, stats)``; same arguments as :meth:`terms`."""
        res = self.terms(score1, score2, fmap1, fmap2, F12, F21, image_size, generator, **kw)
        return res["loss"], res["stats"]
