"""PoSFeat networks: the ResUNet descriptor backbone, the KeypointDet head, the model and checkpoints."""

from .detector import KeypointDet
from .posfeat import DEFAULT_CONFIG, PoSFeat, build_model, load_checkpoint, resolve_config, save_checkpoint
from .resunet import ENCODERS, IMAGENET_MEAN, IMAGENET_STD, ResUNet, normalize_image, pretrained_weights_path

__all__ = [
    "DEFAULT_CONFIG",
    "ENCODERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KeypointDet",
    "PoSFeat",
    "ResUNet",
    "build_model",
    "load_checkpoint",
    "normalize_image",
    "pretrained_weights_path",
    "resolve_config",
    "save_checkpoint",
]
