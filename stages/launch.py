"""Several training processes inside DVC: with ``train.gpus`` > 1 a training stage starts itself again under
``torchrun`` (one process per GPU; gloo processes on a CPU), so DVC records a multi-GPU run like any other.

The launched processes read the parameters and the study folder the launching stage was given (through
``POSFEAT_STAGE_PARAMS`` and ``POSFEAT_STAGE_DIR``), rank 0 writes the outputs, and the launching stage returns
the run's summary. A failed process fails the stage with the launcher's exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from posfeat.settings import ParamError, param
from stages.common import ROOT, load_params

PARAMS_ENV = "POSFEAT_STAGE_PARAMS"
DIR_ENV = "POSFEAT_STAGE_DIR"


def stage_inputs(params: dict | None, base_dir: Path) -> tuple[dict, Path]:
    """The parameters and study folder of this process: those given, those a launching stage passed on, or
    ``params.yaml`` and the repository."""
    if params is None:
        params = load_params(os.environ.get(PARAMS_ENV, ROOT / "params.yaml"))
    return params, Path(os.environ.get(DIR_ENV, base_dir))


def processes(params: dict, section: str) -> int:
    """``train.gpus`` (default 1), checked against the global batch of ``section`` (``train_desc``, ``train_kp``)."""
    n = param(params, "train.gpus", int, 1)
    if n < 1:
        raise ParamError(f"params.yaml: train.gpus = {n}: expected an int >= 1")
    batch = param(params, f"{section}.batch_size", int)
    if batch % n:
        raise ParamError(
            f"params.yaml: {section}.batch_size = {batch} is not divisible by train.gpus = {n} "
            "(the batch is the global one, split evenly among the processes)"
        )
    return n


def under_torchrun() -> bool:
    """Whether this process is one of ``torchrun``'s."""
    return "LOCAL_RANK" in os.environ


def relaunch(module: str, n: int, params: dict, base_dir: Path) -> None:
    """Run ``python -m module`` as ``n`` processes under ``torchrun --standalone``; raise ``SystemExit`` with
    its exit status when it fails."""
    with tempfile.TemporaryDirectory(prefix="posfeat-launch-") as tmp:
        params_path = Path(tmp) / "params.yaml"
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        env = dict(os.environ, **{PARAMS_ENV: str(params_path), DIR_ENV: str(base_dir)})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m", module]
        print(f"{module}: {n} processes under torchrun", file=sys.stderr, flush=True)
        rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    if rc:
        raise SystemExit(rc)
