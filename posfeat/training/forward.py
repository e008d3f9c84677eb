"""The stage forward pass: what one training step runs through the network, and which parts train.

:class:`StageForward` is the module that ``DistributedDataParallel`` wraps; :func:`set_train_modes` puts the
model's parts in the train / eval modes of the stage (docs/method.md#stage-1-optimisation,
#stage-2-optimisation); :func:`trainable_module` names the part whose parameters the stage optimises.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from posfeat.models import normalize_image


class StageForward(nn.Module):
    """What one training step runs through the network (the module DDP wraps).

    ``desc``: ``describe`` on both images (detector not run) → ``(local_map1, local_map2)``. With
    ``backbone_passes=2`` (default) the backbone runs on image 1, then on image 2, as the official code's
    ``extract(im1)``, ``extract(im2)``: in train mode each BatchNorm normalises with the statistics of B
    images and updates its running averages twice per step. ``backbone_passes=1`` runs one pass over
    ``cat([im1, im2])`` (statistics of 2B images, one update per step); with frozen BatchNorm
    (``freeze_bn``) both give the same outputs.
    ``kp``: backbone under ``no_grad`` (frozen, eval mode), then the detector (instance norms only, so
    per-image) on both images at once → ``(local_map1, local_map2, score1, score2)``.
    """

    def __init__(self, model: nn.Module, stage: str, backbone_passes: int = 2):
        super().__init__()
        if backbone_passes not in (1, 2):
            raise ValueError(f"backbone_passes must be 1 or 2, got {backbone_passes!r}")
        self.model = model
        self.stage = stage
        self.backbone_passes = int(backbone_passes)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stage's outputs for a batch of pairs (see the class docstring)."""
        b = image1.shape[0]
        if self.stage == "desc" and self.backbone_passes == 2:
            return (
                self.model.describe(normalize_image(image1))["local_map"],
                self.model.describe(normalize_image(image2))["local_map"],
            )
        x = normalize_image(torch.cat([image1, image2], 0))
        if self.stage == "desc":
            fmap = self.model.describe(x)["local_map"]
            return fmap[:b], fmap[b:]
        with torch.no_grad():
            feats = self.model.describe(x)
        score = self.model.detect(x, feats)
        fmap = feats["local_map"]
        return fmap[:b], fmap[b:], score[:b], score[b:]


def set_train_modes(model: nn.Module, stage: str, freeze_bn: bool = False) -> None:
    """Stage 1: backbone in train mode (BN batch statistics unless ``freeze_bn``); stage 2: backbone
    in eval mode, detector in train mode (docs/method.md#stage-1-optimisation, #stage-2-optimisation)."""
    model.eval()
    if stage == "desc":
        model.backbone.train()
        if freeze_bn:
            for m in model.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
    else:
        model.detector.train()


def trainable_module(model: nn.Module, stage: str) -> nn.Module:
    """The part a stage trains: the backbone (``desc``) or the detector head (``kp``)."""
    return model.backbone if stage == "desc" else model.detector
