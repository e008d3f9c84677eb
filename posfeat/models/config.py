"""The model configuration: :class:`ModelConfig` (params.yaml ``model``), checked where it is read.

A model keeps its configuration as a plain dict (``model.config``, :meth:`ModelConfig.as_dict`) because that
is what a checkpoint stores and what ``torch.load(weights_only=True)`` reads back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from posfeat.settings import config_from_dict

from .resunet import DECODER_BLOCKS, ENCODERS

#: encoders of :class:`~posfeat.models.PoSFeat`: the ResUNet's (``small``, ``resnet18/34/50``) and ``daisy``
#: (:class:`~posfeat.models.daisy.DaisyEncoder`, a learnable DAISY: no decoder, no ImageNet weights)
MODEL_ENCODERS = (*ENCODERS, "daisy")
INPUT_NORMS = ("imagenet", "standardize")


@dataclass
class ModelConfig:
    """What :func:`~posfeat.models.build_model` builds; the defaults are the paper's model."""

    encoder: str = "resnet50"  # resnet18/34/50 | small (a light CPU ResNet) | daisy (a learnable DAISY, no CNN)
    pretrained: bool = False  # ImageNet weights for resnet*, from torch's local cache only
    desc_dim: int = 128
    global_map: bool = False  # build the unused CAPS coarse head (docs/method.md#networks)
    decoder: list[int] | None = None  # U-Net decoder widths [up3, up2]; None = the encoder's (resnet: 512, 256)
    decoder_block: str = "conv"  # conv (the paper's decoder blocks) | light (conv before upsampling, separable iconv)
    det_conv1: int | None = None  # detector conv1 width at H/4; None = its input channels (paper)
    det_img: int = 64  # detector image-branch width (paper)
    det_mid: int = 128  # detector conv2 width at full resolution (paper)
    input_norm: str = "imagenet"  # imagenet (the paper: ImageNet statistics) | standardize (each image's channels
    # to zero mean, unit variance first: blind to gain, offset, colour cast)

    def __post_init__(self) -> None:
        if self.encoder not in MODEL_ENCODERS:
            raise ValueError(f"model config: unknown encoder {self.encoder!r}; expected one of {list(MODEL_ENCODERS)}")
        if self.encoder == "daisy":
            self._check_daisy()
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"model config: input_norm must be one of {list(INPUT_NORMS)}, got {self.input_norm!r}")
        if self.decoder_block not in DECODER_BLOCKS:
            raise ValueError(
                f"model config: decoder_block must be one of {list(DECODER_BLOCKS)}, got {self.decoder_block!r}"
            )
        dec = self.decoder
        if dec is not None:
            if not (
                isinstance(dec, (list, tuple)) and len(dec) == 2 and all(isinstance(v, int) and v > 0 for v in dec)
            ):
                raise ValueError(f"model config: decoder must be null or two positive widths [up3, up2], got {dec!r}")
            self.decoder = [int(dec[0]), int(dec[1])]

    def _check_daisy(self) -> None:
        """The daisy encoder has no ImageNet weights, coarse head or decoder."""
        extra = [f"{k}: {getattr(self, k)!r}" for k in ("pretrained", "global_map", "decoder") if getattr(self, k)]
        extra += [f"decoder_block: {self.decoder_block!r}"] if self.decoder_block != "conv" else []
        if extra:
            raise ValueError(
                f"model config: the daisy encoder has no ImageNet weights, coarse head or decoder; got "
                f"{', '.join(extra)} (set pretrained and global_map to false, decoder to null)"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, what: str = "model") -> ModelConfig:
        """From params mapping ``what``; an unknown key or a wrong type is a ``ValueError`` naming it."""
        unknown = sorted(set(d or {}) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            allowed = sorted(f.name for f in dataclasses.fields(cls))
            raise ValueError(f"unknown model config key(s) {unknown}; allowed keys: {allowed}")
        return config_from_dict(cls, d, what)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as ``model.config`` and checkpoints hold it."""
        return dataclasses.asdict(self)


#: :class:`ModelConfig`'s defaults as a dict (the paper's model)
DEFAULT_CONFIG: dict[str, Any] = ModelConfig().as_dict()


def resolve_config(config: Mapping[str, Any] | ModelConfig) -> dict[str, Any]:
    """A model configuration with its defaults filled in, as a dict; unknown keys or a bad encoder are a
    ``ValueError`` naming them."""
    if isinstance(config, ModelConfig):
        return config.as_dict()
    return ModelConfig.from_dict(config).as_dict()
