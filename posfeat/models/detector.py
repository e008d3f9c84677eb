"""The keypoint detector head ``KeypointDet`` (docs/method.md#detector-head), with the ``identity`` prior.

Input: the backbone's ``cat(local_map, local_map_small)`` at H/4 (detached: no gradient ever reaches
the backbone from the detector) and the normalised RGB image at full resolution. Output: a
full-resolution score map ``B×1×H×W`` (Softplus of an instance-normalised logit, so ≥ 0 and relative
to the image).

Widths are configurable. The paper's defaults (``conv1 = in_channels``, ``img 64``, ``mid 128``) cost
≈ 97.5 GMAC per 640×480 image, mostly in ``conv2`` at full resolution; the CPU demo uses a narrow head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class KeypointDet(nn.Module):
    """``s = Softplus(IN(conv3(PReLU(IN(conv2(cat[up(PReLU(IN(conv1(f)))), IN(convimg(img))]))))))``.

    Args:
        in_channels: channels of the feature input (192 = 128 + 64 in the paper).
        out_channels: score channels (1).
        conv1_channels: width of ``conv1`` at H/4 (``None`` → ``in_channels``, as the paper).
        img_channels: width of the image branch ``convimg`` (64).
        mid_channels: width of ``conv2`` at full resolution (128).

    One ``nn.PReLU()`` (a single parameter, 0.25 at init) is shared by both activations; the
    InstanceNorms have no affine parameters and no running statistics (train == eval).
    With the paper's widths the head has 628,930 parameters.
    """

    def __init__(
        self,
        in_channels: int = 192,
        out_channels: int = 1,
        conv1_channels: int | None = None,
        img_channels: int = 64,
        mid_channels: int = 128,
    ):
        super().__init__()
        c1 = int(in_channels if conv1_channels is None else conv1_channels)
        self.in_channels = int(in_channels)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.norm1 = nn.InstanceNorm2d(c1)
        self.convimg = nn.Conv2d(3, img_channels, 3, padding=1)
        self.normimg = nn.InstanceNorm2d(img_channels)
        self.conv2 = nn.Conv2d(c1 + img_channels, mid_channels, 3, padding=1)
        self.norm2 = nn.InstanceNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1)
        self.norm3 = nn.InstanceNorm2d(out_channels)
        self.act = nn.PReLU()
        self.out_act = nn.Softplus()

    def forward(self, fmap: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``fmap``: ``B×in×h×w`` (detached here); ``image``: normalised ``B×3×H×W``. Returns ``B×out×H×W``."""
        if fmap.shape[1] != self.in_channels:
            raise ValueError(f"KeypointDet expects {self.in_channels} feature channels, got {fmap.shape[1]}")
        fmap = fmap.detach()  # the identity prior multiplies by ones: nothing else to do
        a = self.act(self.norm1(self.conv1(fmap)))
        a = F.interpolate(a, size=image.shape[-2:], mode="bilinear", align_corners=False)
        g = self.normimg(self.convimg(image))
        h = self.act(self.norm2(self.conv2(torch.cat([a, g], dim=1))))
        # the output layer in float32 even under autocast: a bfloat16 score map has only 8 mantissa bits, so
        # neighbouring scores tie (in the NMS and the top-k); the 1x1 conv is cheap, the rest stays in bf16
        with torch.autocast(device_type=h.device.type, enabled=False):
            return self.out_act(self.norm3(self.conv3(h.float())))
