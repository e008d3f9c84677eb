"""PoSFeat networks: the descriptor backbones (the paper's ResUNet, the CPU DaisyEncoder), the KeypointDet head, the
model and checkpoints."""

from .config import DEFAULT_CONFIG, INPUT_NORMS, MODEL_ENCODERS, ModelConfig, resolve_config
from .daisy import DaisyEncoder
from .detector import KeypointDet
from .posfeat import PoSFeat, build_model, load_checkpoint, save_checkpoint
from .resunet import ENCODERS, IMAGENET_MEAN, IMAGENET_STD, ResUNet, normalize_image, pretrained_weights_path

__all__ = [
    "DEFAULT_CONFIG",
    "DaisyEncoder",
    "ENCODERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_NORMS",
    "KeypointDet",
    "MODEL_ENCODERS",
    "ModelConfig",
    "PoSFeat",
    "ResUNet",
    "build_model",
    "load_checkpoint",
    "normalize_image",
    "pretrained_weights_path",
    "resolve_config",
    "save_checkpoint",
]
