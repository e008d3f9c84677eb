"""The descriptor backbone: a ResNet encoder with a two-step U-Net decoder (docs/method.md#networks).

``ResUNet`` maps an ImageNet-normalised image ``B×3×H×W`` (H, W multiples of 16) to

* ``local_map``: the dense descriptor map ``B×D×H/4×W/4`` (post-ELU, *not* L2-normalised; PoSFeat
  normalises after bilinear sampling),
* ``local_map_small``: the encoder stem after max-pooling, ``B×Cs×H/4×W/4`` (fed to the detector),
* optionally ``global_map`` (``B×128×H/16×W/16``), a CAPS leftover the method never uses.

Encoders: torchvision ``resnet18/34/50`` (stem + layer1–3, layer4 unused) or ``small``, a light
CPU encoder with the same strides (4/4/8/16) and the same output contract, used by the demo.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from posfeat.io import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# encoder name -> (stem channels, [layer1, layer2, layer3] channels, decoder widths (up3, up2))
_ENCODERS: dict[str, tuple[int, tuple[int, int, int], tuple[int, int]]] = {
    "small": (32, (64, 128, 256), (64, 32)),
    "resnet18": (64, (64, 128, 256), (512, 256)),
    "resnet34": (64, (64, 128, 256), (512, 256)),
    "resnet50": (64, (256, 512, 1024), (512, 256)),
}
ENCODERS = tuple(_ENCODERS)

_TORCHVISION_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,  # = the original's pretrained=True
}


def normalize_image(img: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a ``B×3×H×W`` float image in ``[0, 1]``."""
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"normalize_image expects a B×3×H×W tensor, got shape {tuple(img.shape)}")
    mean = img.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = img.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (img - mean) / std


def check_image_batch(x: torch.Tensor, multiple: int, network: str, hint: str = "") -> None:
    """``ValueError`` naming ``network`` unless ``x`` is ``B×3×H×W`` with H and W multiples of ``multiple``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{network} expects a B×3×H×W image tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{network} needs H and W to be multiples of {multiple}, got H={h}, W={w}{hint}")


def pretrained_weights_path(encoder: str) -> Path:
    """Where torchvision's hub cache keeps the ImageNet weights of ``encoder`` (never downloaded here)."""
    if encoder not in _TORCHVISION_WEIGHTS:
        raise ValueError(
            f"no ImageNet weights exist for encoder {encoder!r}; choose one of {sorted(_TORCHVISION_WEIGHTS)}"
        )
    url = _TORCHVISION_WEIGHTS[encoder].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


class ConvBnElu(nn.Sequential):
    """``conv(k, s)`` of the original: Conv2d (padding ``(k−1)/2``, bias) → BatchNorm2d → ELU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2),
            nn.BatchNorm2d(out_channels),
            nn.ELU(inplace=True),
        )


class UpConv(nn.Module):
    """Bilinear ×2 upsampling (``align_corners=True``) followed by ``conv(3, 1)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBnElu(in_channels, out_channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.conv(x)


class LowResUpConv(nn.Module):
    """``conv(3, 1)`` at the input resolution, then bilinear ×2 upsampling (``align_corners=True``).

    The same layer as :class:`UpConv` with the two steps swapped: 4× fewer multiply-adds (the light decoder).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBnElu(in_channels, out_channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=True)


class SeparableConvBnElu(nn.Sequential):
    """Depthwise ``3×3`` conv → pointwise ``1×1`` conv (bias) → BatchNorm2d → ELU (the light decoder's ``iconv``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, 1, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1),
            nn.BatchNorm2d(out_channels),
            nn.ELU(inplace=True),
        )


#: decoder block styles: ``conv`` (the paper: upsample → conv3×3, conv3×3) | ``light`` (conv3×3 → upsample,
#: depthwise-separable iconv; ≈ 5× fewer decoder multiply-adds)
DECODER_BLOCKS = ("conv", "light")


def skip_connect(enc: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Pad ``enc`` to the spatial size of ``up`` (split evenly, as the original), then ``cat[up, enc]``."""
    dy = up.shape[2] - enc.shape[2]
    dx = up.shape[3] - enc.shape[3]
    if dx or dy:
        enc = F.pad(enc, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
    return torch.cat([up, enc], dim=1)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallEncoder(nn.Module):
    """A light encoder with ResNet's strides: stem /2 + max-pool /4, layer1 /4, layer2 /8, layer3 /16.

    Each layer is two conv3×3-BN-ReLU blocks (the first one strided in layers 2 and 3).
    """

    def __init__(self, stem: int = 32, filters: tuple[int, int, int] = (64, 128, 256)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.layer1 = nn.Sequential(_conv_bn_relu(stem, filters[0]), _conv_bn_relu(filters[0], filters[0]))
        self.layer2 = nn.Sequential(_conv_bn_relu(filters[0], filters[1], 2), _conv_bn_relu(filters[1], filters[1]))
        self.layer3 = nn.Sequential(_conv_bn_relu(filters[1], filters[2], 2), _conv_bn_relu(filters[2], filters[2]))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ResUNet(nn.Module):
    """ResNet encoder (layers 1–3) + U-Net decoder to H/4 (docs/method.md#networks).

    Args:
        encoder: ``small`` | ``resnet18`` | ``resnet34`` | ``resnet50``.
        pretrained: load torchvision's ImageNet weights, **only** from the local torch hub cache (never
            downloaded); a missing file is a :class:`~posfeat.io.DataError` naming the expected path and the URL.
        desc_dim: channels of ``local_map`` (128 in the paper).
        global_map: also build ``conv_coarse`` and return ``global_map`` (unused by the method; the
            official parameter count, 20.51 M for resnet50, includes it).
        decoder: widths ``(up3, up2)`` of the decoder at H/8 and H/4; ``None`` = the encoder's default
            (512, 256 for the ResNets, as the paper; 64, 32 for ``small``).
        decoder_block: ``conv`` (the paper's blocks) or ``light`` (each ``upconv`` convolves before it
            upsamples, each ``iconv`` is depthwise-separable: a CPU-efficient decoder).
    """

    def __init__(
        self,
        encoder: str = "resnet50",
        pretrained: bool = False,
        desc_dim: int = 128,
        global_map: bool = False,
        decoder: tuple[int, int] | None = None,
        decoder_block: str = "conv",
    ):
        super().__init__()
        if encoder not in _ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; expected one of {list(_ENCODERS)}")
        if decoder_block not in DECODER_BLOCKS:
            raise ValueError(f"unknown decoder_block {decoder_block!r}; expected one of {list(DECODER_BLOCKS)}")
        stem, filters, (up3, up2) = _ENCODERS[encoder]
        if decoder is not None:
            up3, up2 = (int(v) for v in decoder)
        self.encoder_name = encoder
        self.desc_dim = int(desc_dim)
        self.stem_channels = stem
        if encoder == "small":
            if pretrained:
                raise ValueError("the 'small' encoder has no ImageNet weights; set pretrained: false")
            enc: nn.Module = SmallEncoder(stem, filters)
        else:
            enc = getattr(torchvision.models, encoder)(weights=None)  # weights=None: never downloads
            if pretrained:
                path = pretrained_weights_path(encoder)
                if not path.is_file():
                    raise DataError(
                        f"{path}: ImageNet weights of {encoder} not found (torch's hub cache; nothing is downloaded "
                        f"at run time): fetch {_TORCHVISION_WEIGHTS[encoder].url} to that path, or add "
                        "-S model.pretrained=false"
                    )
                enc.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.firstconv = enc.conv1
        self.firstbn = enc.bn1
        self.firstrelu = enc.relu
        self.firstmaxpool = enc.maxpool
        self.layer1 = enc.layer1
        self.layer2 = enc.layer2
        self.layer3 = enc.layer3
        self.conv_coarse = ConvBnElu(filters[2], 128, 1, 1) if global_map else None
        if decoder_block == "light":
            up, iconv = LowResUpConv, SeparableConvBnElu
        else:
            up, iconv = UpConv, lambda cin, cout: ConvBnElu(cin, cout, 3, 1)
        self.decoder_block = decoder_block
        self.upconv3 = up(filters[2], up3)
        self.iconv3 = iconv(filters[1] + up3, up3)
        self.upconv2 = up(up3, up2)
        self.iconv2 = iconv(filters[0] + up2, up2)
        self.conv_fine = ConvBnElu(up2, self.desc_dim, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: ImageNet-normalised ``B×3×H×W``, H and W multiples of 16."""
        check_image_batch(x, 16, "ResUNet", " (crop or resize first)")
        x = self.firstrelu(self.firstbn(self.firstconv(x)))
        x_first = self.firstmaxpool(x)
        x1 = self.layer1(x_first)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        i3 = self.iconv3(skip_connect(x2, self.upconv3(x3)))
        i2 = self.iconv2(skip_connect(x1, self.upconv2(i3)))
        out = {"local_map": self.conv_fine(i2), "local_map_small": x_first}
        if self.conv_coarse is not None:
            out["global_map"] = self.conv_coarse(x3)
        return out
