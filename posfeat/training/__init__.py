"""The trainer of both PoSFeat stages (docs/method.md#stage-1-optimisation, #stage-2-optimisation;
docs/architecture.md).

``train(stage="desc", …)`` trains the backbone with the line-to-window epipolar loss (the detector is
not even run); ``train(stage="kp", …)`` loads the stage-1 checkpoint, freezes the backbone (eval mode,
``no_grad``) and trains the detector head with the REINFORCE loss.

Reproducibility and resume
    The data of step ``s`` (pair order, colour jitter) and the loss's random sampling are pure
    functions of ``(seed, s, position in the global batch)``; see :func:`posfeat.trainset.batch_order.global_batch`.
    Every ``checkpoint_every`` steps ``ckpt_dir/last.pt`` receives model, optimiser, scheduler, AMP
    scaler, step, RNG states and the per-step history, atomically and ``weights_only``-loadable. A rerun
    with the same configuration continues from it and, on CPU, ends with weights *equal* to those of an
    uninterrupted run. A checkpoint written under another configuration (fingerprint) is ignored.

Distributed training
    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised (gloo on CPU, nccl on CUDA),
    the trained module is wrapped in ``DistributedDataParallel`` and each rank takes its slice of the
    same seeded global batch. The losses are computed per sample with per-sample generators and
    reduced so that loss and gradient equal those of one process on the global batch: the stage-1 loss
    is a weighted mean pooled over the batch (``Σ m·s·c / Σ m·s`` per direction), so numerators and the
    (constant) denominators are all-reduced; the stage-2 loss is a plain sum over pairs. BatchNorm uses
    ``SyncBatchNorm`` on CUDA; on CPU PyTorch has no SyncBatchNorm, so each rank normalises with its own
    batch statistics (the only difference from one process; ``freeze_bn`` removes it). Only rank 0 logs
    and writes files.

The package, one concept a module (in the order a run meets them)
    :mod:`~posfeat.training.config`        the stage configurations (dataclasses), the optimiser and the loss
    :mod:`~posfeat.training.fingerprints`  digests of index, stage-1 model and training code; the fingerprint
    :mod:`~posfeat.training.distributed`   rank, world size, process group, all-reduce
    :mod:`~posfeat.training.rng`           global RNG states into and out of a checkpoint
    :mod:`~posfeat.training.forward`       the stage forward pass (what DDP wraps) and the train modes
    :mod:`~posfeat.training.objectives`    per-stage objectives and their reduction across ranks
    :mod:`~posfeat.training.visualizer`    fixed validation pairs, rendered every ``vis_every`` steps
    :mod:`~posfeat.training.history`       per-step records, logged rows, counters, final metrics
    :mod:`~posfeat.training.checkpoint`    the resumable state ``last.pt``, written and read back
    :mod:`~posfeat.training.live`          the DVCLive logger
    :mod:`~posfeat.training.run`           a run's spec, datasets, model (stage module trainable), optimiser
    :mod:`~posfeat.training.loop`          :func:`train`: the run set up, stepped and finished

"""

from posfeat.training.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME
from posfeat.training.config import STAGES, DescConfig, KpConfig, StageConfig, build_loss, make_optimizer, stage_config
from posfeat.training.distributed import DistInfo, init_distributed
from posfeat.training.fingerprints import TRAINING_CODE, code_digest, fingerprint
from posfeat.training.forward import StageForward, set_train_modes, trainable_module
from posfeat.training.loop import TrainingInterrupted, train
from posfeat.training.objectives import compute_objective, sample_generator
from posfeat.training.rng import rng_state, set_rng_state
from posfeat.training.run import RunSpec
from posfeat.training.visualizer import Visualizer

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "STAGES",
    "TRAINING_CODE",
    "DescConfig",
    "DistInfo",
    "KpConfig",
    "RunSpec",
    "StageConfig",
    "StageForward",
    "TrainingInterrupted",
    "Visualizer",
    "build_loss",
    "code_digest",
    "compute_objective",
    "stage_config",
    "fingerprint",
    "init_distributed",
    "make_optimizer",
    "rng_state",
    "sample_generator",
    "set_rng_state",
    "set_train_modes",
    "trainable_module",
    "train",
]
