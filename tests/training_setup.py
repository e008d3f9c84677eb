"""Shared set-up of the training tests (not a test module): a tiny model and stage configurations, the pair
index of the session's demo world (fixture ``index``; import it into a test module) and seeded batches."""

from __future__ import annotations

import pytest
import torch

from posfeat.trainset.batch_order import global_batch
from posfeat.trainset.pairs import PairDataset
from posfeat.trainset.prepare import prepare_megadepth

#: a narrow detector head so that stage 2 is cheap on a CPU
TINY_MODEL = {"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}
SIZE = (128, 96)
STEPS, LR = 60, 1e-2


def tiny_cfg(stage: str, **kw) -> dict:
    cfg = dict(
        image_size=list(SIZE),
        batch_size=2,
        epochs=1,
        steps_per_epoch=4,
        lr_decay_step=9,
        lr_gamma=0.1,
        log_every=1,
        vis_every=100,
        checkpoint_every=2,
        num_workers=0,
        color_jitter=[0.5, 0.5, 0.5, 0.1],
        vis_pairs=1,
        vis_keypoints=128,
    )
    if stage == "desc":
        cfg.update(grid_size=16, line_step=50, window_size=0.1, temperature=60.0, win_cost_thr=0.1)
    else:
        cfg.update(grid_size=8, temperature=60.0, reward_thr=2.0, good_reward=1.0, bad_reward=-0.25, kp_penalty=1e-3)
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def index(demo_root) -> dict:
    """The prepared pair index of the session's demo world."""
    idx, _ = prepare_megadepth(demo_root / "megadepth", seed=0)
    assert idx["train"], "the demo world has no training pairs"
    return idx


def batch_of(index, n=2, size=SIZE, step=0, seed=0) -> dict:
    """Global batch ``step`` of ``n`` training pairs (no jitter), stacked as the data loader does."""
    ds = PairDataset(index, "train", size, None, seed)
    items = [ds[it] for it in global_batch(len(ds), n, step, seed)]
    return {
        k: (torch.stack([s[k] for s in items]) if isinstance(items[0][k], torch.Tensor) else [s[k] for s in items])
        for k in items[0]
    }
