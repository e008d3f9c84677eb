"""Small shared helpers: seeding, device choice, logging."""

from __future__ import annotations

import collections.abc
import dataclasses
import logging
import random
import sys
import types
import typing
from typing import Any, Mapping, TypeVar

import numpy as np
import torch

from posfeat.io import DataError

T = TypeVar("T")


class ParamError(DataError):
    """A parameter (``params.yaml`` or a settings mapping) is missing, of the wrong type or out of range.

    The message names the parameter by its full dotted name (``train_desc.batch_size``), its value and
    what was expected.
    """


class UnknownSettingError(ParamError, KeyError):
    """A settings mapping names a key the configuration does not have (a typo must not be ignored)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def describe_type(hint: Any) -> str:
    """A reader's name for a type hint: ``int``, ``float or None``, ``list of int``, ``one of ('abs', 'max')``."""
    if hint is Any:
        return "anything"
    if hint is None or hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return f"one of {args}"
    if origin in (list, tuple, collections.abc.Sequence):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(describe_type(a) for a in args)})"
        return f"a list of {describe_type(args[0])}" if args else "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    if hint is float:
        return "float (a number)"
    return getattr(hint, "__name__", str(hint))


def type_matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as YAML loads it) fits type hint ``hint``.

    Strict where a wrong type would fail late: ``bool`` is not an ``int``, a string is never a number; an
    ``int`` is a ``float``; lists and tuples are interchangeable (YAML has only lists).
    """
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(type_matches(v, a) for v, a in zip(value, args))
        return not args or all(type_matches(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not know: accept


def check_param(value: Any, hint: Any, name: str) -> Any:
    """``value`` if it fits ``hint``, else :class:`ParamError` naming ``name`` (full dotted name), value and type."""
    if not type_matches(value, hint):
        raise ParamError(f"{name} = {value!r} ({type(value).__name__}): expected {describe_type(hint)}")
    return value


def check_params(d: Mapping[str, Any], types_: Mapping[str, Any], what: str) -> None:
    """Type-check the keys of ``d`` that ``types_`` names (``{key: type hint}``); ``what`` prefixes the names."""
    for key, hint in types_.items():
        if key in d:
            check_param(d[key], hint, f"{what}.{key}")


def config_from_dict(cls: type[T], d: Mapping[str, Any] | None, what: str) -> T:
    """Build dataclass ``cls`` from a params mapping ``what`` (its dotted name, e.g. ``extract.hpatches``).

    Unknown keys raise :class:`UnknownSettingError` naming them; a value of the wrong type (by the field's
    annotation) or one the class rejects (``__post_init__``'s ``ValueError``) raises :class:`ParamError`
    naming ``what.key``, the value and what was expected, before anything uses it.
    """
    if d is not None and not isinstance(d, Mapping):
        raise ParamError(f"{what} = {d!r}: expected a mapping of settings")
    d = dict(d or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise UnknownSettingError(f"{what}: unknown settings {sorted(unknown)} (known: {sorted(known)})")
    hints = typing.get_type_hints(cls)
    check_params(d, {k: hints[k] for k in d if k in hints}, what)
    try:
        return cls(**d)
    except DataError:
        raise
    except ValueError as e:
        raise ParamError(f"{what}: {e}") from e


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else is passed to ``torch.device``.

    Asking for CUDA on a machine without it is a clear error rather than a late crash.
    """
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParamError(
            f"device {device!r} requested but CUDA is not available on this machine; run on a GPU "
            "machine, or on the CPU with an explicit override (dvc exp run -S device=cpu)"
        )
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN: AVX-512 BF16 or AMX); without it,
    CPU bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(enabled: bool, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype of an opt-in ``amp`` setting on ``device``, or ``None`` for float32.

    CUDA: bfloat16 where supported, else float16 (which needs a GradScaler). CPU: bfloat16 only where the
    CPU has it natively (:func:`cpu_has_native_bf16`); elsewhere ``amp`` falls back to float32 with a
    warning, since emulated bfloat16 would only be slower.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    get_logger("posfeat").warning("amp requested but %s has no native bfloat16: float32", device)
    return None


def describe_device(device: torch.device | str) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3, 1 visible)``: the device a run uses, named."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"{dev} ({torch.cuda.get_device_name(index)}, {torch.cuda.device_count()} visible)"
    return str(dev)


def describe_model(model: Any) -> str:
    """``daisy 200-d, 0.11 M parameters (0.04 M trainable)`` for a PoSFeat network (the trainable count where
    some parameters are frozen), else ``str(model)``."""
    if not isinstance(model, torch.nn.Module):
        return str(model)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cfg = getattr(model, "config", {}) or {}
    name = f"{cfg.get('encoder', type(model).__name__)} {cfg.get('desc_dim', '?')}-d"
    frozen = f" ({trainable / 1e6:.2f} M trainable)" if trainable < total else ""
    return f"{name}, {total / 1e6:.2f} M parameters{frozen}"


def start_line(
    prog: str,
    device: torch.device | str | None = None,
    model: Any = None,
    data: str | None = None,
    steps: str | None = None,
) -> str:
    """The one line a stage or command prints when its work starts: what runs, on which device, with which
    model, on what data, for how many steps (the parts that apply)."""
    parts = [f"torch {torch.__version__}"]
    if device is not None:
        parts.insert(0, f"device {describe_device(device)}")
    if model is not None:
        parts.append(f"model {describe_model(model)}")
    if data:
        parts.append(f"data {data}")
    if steps:
        parts.append(f"steps {steps}")
    return f"{prog}: " + ", ".join(parts)


def announce(
    prog: str,
    device: torch.device | str | None = None,
    model: Any = None,
    data: str | None = None,
    steps: str | None = None,
) -> None:
    """Print :func:`start_line` on stderr at once (before any progress bar)."""
    print(start_line(prog, device, model, data, steps), file=sys.stderr, flush=True)


def get_logger(name: str) -> logging.Logger:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    return logging.getLogger(name)
