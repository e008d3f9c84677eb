"""The stage configuration: :class:`DescConfig` (params.yaml ``train_desc``) and :class:`KpConfig`
(``train_kp``), both a :class:`StageConfig`; the optimiser and the loss they build.

:func:`stage_config` reads a stage's mapping where it is read: a missing, unknown or mistyped key is a
:class:`~posfeat.settings.ParamError` naming ``train_<stage>.<key>``. A field whose metadata says
``trajectory: False`` does not change the training trajectory, so it may differ between a run and its resume
(:meth:`StageConfig.fingerprinted` leaves it out).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn as nn

from posfeat.settings import ParamError, config_from_dict

STAGES = ("desc", "kp")


def _run_only(default: Any) -> Any:
    """A field that does not change the trajectory (logging, checkpoints, workers, the run's length)."""
    return field(default=default, metadata={"trajectory": False})


@dataclass(kw_only=True)
class StageConfig:
    """Settings both stages share. Every field has a key in conf/config.yaml (the demo's value, with the
    paper's beside it). A default here is the paper's (``scale=paper``, which tests/test_config_composition.py
    checks), except for the fields that do not change the trajectory (workers, logging, checkpoints), whose
    defaults suit a single CPU process."""

    image_size: tuple[int, int]  # px, W H (multiples of 16)
    batch_size: int  # pairs per global step
    epochs: int = field(metadata={"trajectory": False})  # steps = epochs × steps_per_epoch
    steps_per_epoch: int
    lr_decay_step: int  # epochs between learning-rate decays (StepLR)
    lr_gamma: float
    log_every: int = field(metadata={"trajectory": False})
    vis_every: int = field(metadata={"trajectory": False})
    checkpoint_every: int = field(metadata={"trajectory": False})
    grid_size: int  # px, one query (stage 1) or one sampled keypoint (stage 2) per cell
    temperature: float  # softmax temperature of the descriptor similarities
    color_jitter: list[float] | None = field(default_factory=lambda: [1.0, 1.0, 1.0, 0.4])  # (b, c, s, h) or None
    rotation: float = 0.0  # degrees: second image's in-plane camera rotation, uniform in ±rotation
    scale: tuple[float, float] = (1.0, 1.0)  # (min, max): second image's zoom, log-uniform
    crop: tuple[float, float] = (1.0, 1.0)  # (min, max) resolution factor before one image_size window is cut
    grayscale: float = 0.0  # probability that a training image is turned grey (after the colour jitter)
    night: float = 0.0  # probability that a training image gets a night look (dim, tinted, noisy)
    num_workers: int = _run_only(0)
    amp: bool = False  # autocast (posfeat.utils.autocast_dtype); off = float32, as the official code
    vis_pairs: int = _run_only(4)  # fixed validation pairs drawn for the visualisations
    vis_keypoints: int = _run_only(512)  # keypoints per image in the match visualisation
    metrics_window: int = _run_only(20)  # final metrics average the last N steps

    def __post_init__(self) -> None:
        self.image_size = tuple(int(v) for v in self.image_size)
        self.scale, self.crop = tuple(self.scale), tuple(self.crop)
        w, h = self.image_size
        if w % 16 or h % 16:
            raise ValueError(f"image_size must be multiples of 16, got {w}x{h}")
        positive = (
            "batch_size",
            "epochs",
            "steps_per_epoch",
            "lr_decay_step",
            "log_every",
            "vis_every",
            "checkpoint_every",
        )
        for k in positive:
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")

    @property
    def total_steps(self) -> int:
        """Epochs × steps per epoch."""
        return self.epochs * self.steps_per_epoch

    def fingerprinted(self) -> dict[str, Any]:
        """The settings that determine the trajectory (for the checkpoint fingerprint)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("trajectory", True)}


@dataclass(kw_only=True)
class DescConfig(StageConfig):
    """Stage 1, the descriptor: the line-to-window loss's settings (docs/method.md#stage-1-line-to-window-loss)."""

    line_step: int  # points searched along each epipolar line
    window_size: float  # half-size of the soft-argmax window, normalised units
    win_cost_thr: float  # a query enters the loss when its epipolar cost < this × min(W, H) px
    freeze_bn: bool = False  # BatchNorm of the trained backbone in eval mode (running statistics)
    backbone_passes: int = 2  # 2 = image 1 then image 2 (the official BatchNorm batches); 1 = one pass
    stable_sigma: bool = False  # centred variance for the loss's σ (off = the official formula)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone_passes not in (1, 2):
            raise ValueError(f"backbone_passes must be 1 or 2, got {self.backbone_passes!r}")

    def loss(self) -> nn.Module:
        """:class:`~posfeat.losses.line2window.Line2WindowLoss` with these settings."""
        from posfeat.losses.line2window import Line2WindowLoss

        return Line2WindowLoss(
            grid_size=self.grid_size,
            line_step=self.line_step,
            window_size=float(self.window_size),
            temperature=float(self.temperature),
            win_cost_thr=float(self.win_cost_thr),
            stable_sigma=self.stable_sigma,
        )


@dataclass(kw_only=True)
class KpConfig(StageConfig):
    """Stage 2, the detector: the REINFORCE reward's settings (docs/method.md#stage-2-reinforce-loss)."""

    reward_thr: float  # px: a match within this epipolar distance is rewarded
    good_reward: float
    bad_reward: float
    kp_penalty: float  # cost of each sampled keypoint

    def loss(self) -> nn.Module:
        """:class:`~posfeat.losses.reinforce.ReinforceLoss` with these settings."""
        from posfeat.losses.reinforce import ReinforceLoss

        return ReinforceLoss(
            grid_size=self.grid_size,
            temperature=float(self.temperature),
            reward_thr=float(self.reward_thr),
            good_reward=float(self.good_reward),
            bad_reward=float(self.bad_reward),
            kp_penalty=float(self.kp_penalty),
        )


STAGE_CONFIGS: dict[str, type[StageConfig]] = {"desc": DescConfig, "kp": KpConfig}


def stage_config(stage: str, cfg: Mapping[str, Any] | StageConfig) -> StageConfig:
    """The configuration of ``stage`` from params.yaml's ``train_<stage>`` mapping (a config passes through)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    cls = STAGE_CONFIGS[stage]
    if isinstance(cfg, StageConfig):
        if not isinstance(cfg, cls):
            raise ValueError(f"stage {stage!r} needs a {cls.__name__}, got a {type(cfg).__name__}")
        return cfg
    return config_from_dict(cls, cfg, f"train_{stage}")


def build_loss(stage: str, cfg: Mapping[str, Any] | StageConfig) -> nn.Module:
    """The loss module of ``stage`` with the settings of ``cfg``."""
    return stage_config(stage, cfg).loss()


#: the optimizers a training stage can use
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


def check_optimizer(name: object, key: str) -> str:
    """``name`` if it is one of :data:`OPTIMIZERS`, else a :class:`ParamError` naming ``key`` and the fix."""
    if name not in OPTIMIZERS:
        raise ParamError(
            f"params.yaml: {key} = {name!r}: expected one of {', '.join(OPTIMIZERS)} "
            f"(e.g. dvc exp run -S {key}={OPTIMIZERS[-1]})"
        )
    return str(name)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """``adam`` (default betas, no weight decay) or ``sgd`` (momentum 0, no weight decay)."""
    check_optimizer(name, "optimizer")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=0.0)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")
