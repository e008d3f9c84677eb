"""What every stage module shares: reading ``params.yaml``, typed parameter access, the entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from posfeat.entry import run_entry
from posfeat.io import DataError
from posfeat.utils import ParamError, check_param

ROOT = Path(__file__).resolve().parents[1]
_MISSING = object()


def load_params(path: str | Path = ROOT / "params.yaml") -> dict:
    """The study's parameters as a dict (the library never reads this file); a bad file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: parameter file not found")
    try:
        with open(path) as f:
            params = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        col = f", column {mark.column + 1}" if mark is not None else ""
        raise DataError(f"{where}: not valid YAML{col} ({getattr(e, 'problem', None) or e}); fix the syntax there "
                        f"(a bracket or quote left open, a tab, a missing ': '); `git diff {path.name}` shows the "
                        "edit") from e
    if not isinstance(params, dict):
        raise DataError(f"{path}: expected a mapping of parameters, got {type(params).__name__}")
    return params


def param(params: dict, name: str, hint: Any = Any, default: Any = _MISSING) -> Any:
    """``params`` at dotted ``name`` (``eval.hpatches.max_threshold``), type-checked against ``hint``.

    A missing key (without ``default``) or a value of the wrong type is a :class:`ParamError` naming the
    full dotted name, the value and the expected type.
    """
    node: Any = params
    parts = name.split(".")
    for i, key in enumerate(parts):
        if not isinstance(node, dict):
            raise ParamError(f"params.yaml: {'.'.join(parts[:i])} = {node!r}: expected a mapping (with key {key!r})")
        if key not in node:
            if default is not _MISSING:
                return default
            raise ParamError(f"params.yaml: {name} is missing")
        node = node[key]
    return check_param(node, hint, name)


def dataset_root(params: dict, dataset: str, base_dir: Path) -> Path:
    """``datasets.<dataset>`` of ``params`` as a path; a relative one is taken from ``base_dir``."""
    root = Path(param(params, f"datasets.{dataset}", str))
    return root if root.is_absolute() else Path(base_dir) / root


def seeded_settings(params: dict, name: str) -> dict:
    """The ``name`` section of ``params`` (``eval.eth``) as a dict, with the study's ``seed`` unless it sets one."""
    settings = dict(param(params, name, dict))
    settings.setdefault("seed", param(params, "seed", int, 0))
    return settings


def start_line(prog: str, params: dict) -> str:
    """What a stage runs on, said before it starts: the device it will use and the model it trains or reads."""
    import torch

    asked = params.get("device", "auto")
    if asked in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = str(asked)
    if device.startswith("cuda") and torch.cuda.is_available():
        device += f" ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible)"
    model = params.get("model") or {}
    return (f"{prog}: device {device} (params device: {asked}), torch {torch.__version__}, "
            f"model {model.get('encoder', '?')} {model.get('desc_dim', '?')}-d")


def stage_entry(main: Callable[[], Any], prog: str) -> None:
    """``python -m stages.<name>`` for a stage without arguments: bad input → one message, exit status 2.

    A line on stderr first says which device and model the stage runs with (:func:`start_line`).
    """
    def run(argv: list[str]) -> int:
        if argv:
            raise SystemExit(f"{prog}: takes no arguments except --debug, got {argv}")
        try:
            print(start_line(prog, load_params()), file=sys.stderr, flush=True)
        except (DataError, AttributeError):  # an unreadable params.yaml is reported by the stage itself
            pass
        main()
        return 0

    sys.exit(run_entry(run, prog=prog))
