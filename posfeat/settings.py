"""Parameter checking: the errors a bad parameter raises, type checks against annotations, and settings
dataclasses built from ``params.yaml`` mappings. Imports neither torch nor OpenCV, so configuration modules that
use it stay light (``posfeat --help`` builds flags from them)."""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import numpy as np

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

    Unknown keys raise :class:`UnknownSettingError` naming them, missing required ones a :class:`ParamError`
    listing them; a value of the wrong type (by the field's
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
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in d
    ]
    if missing:
        raise ParamError(f"{what} configuration lacks {missing}")
    hints = typing.get_type_hints(cls)
    check_params(d, {k: hints[k] for k in d if k in hints}, what)
    try:
        return cls(**d)
    except DataError:
        raise
    except ValueError as e:
        raise ParamError(f"{what}: {e}") from e


def setting(
    default: Any,
    text: str,
    choices: tuple | None = None,
    *,
    flag: str | None = None,
    param: str | None = None,
    cli: bool = True,
    study: bool = True,
) -> Any:
    """A settings dataclass field with its command-line help, read by :func:`posfeat.cli.flags.add_config_flags`.

    ``choices``: the allowed values; ``flag``: a flag name other than the field's (``--field-name``); ``param``:
    the study's parameter when it is not ``<group>.<field>``; ``cli=False``: no flag; ``study=False``: no
    parameter either, the study's stage sets the field itself (e.g. from the method).
    """
    meta = {"help": text, "choices": choices, "flag": flag, "param": param, "cli": cli, "study": study}
    return dataclasses.field(default=default, metadata=meta)


# ----------------------------------------------------------------------- the study's parameter file
_MISSING = object()


def param(params: dict, name: str, hint: Any = Any, default: Any = _MISSING, source: str = "params.yaml") -> Any:
    """``params`` at dotted ``name`` (``eval.hpatches.max_threshold``), type-checked against ``hint``.

    A missing key (without ``default``) or a value of the wrong type is a :class:`ParamError` naming
    ``source`` (the parameter file), the full dotted name, the value and the expected type.
    """
    node: Any = params
    parts = name.split(".")
    for i, key in enumerate(parts):
        if not isinstance(node, dict):
            raise ParamError(f"{source}: {'.'.join(parts[:i])} = {node!r}: expected a mapping (with key {key!r})")
        if key not in node:
            if default is not _MISSING:
                return default
            raise ParamError(f"{source}: {name} is missing")
        node = node[key]
    return check_param(node, hint, name)


def dataset_root(params: dict, dataset: str, base_dir: Path, source: str = "params.yaml") -> Path:
    """``datasets.<dataset>`` of ``params`` as a path; a relative one is taken from ``base_dir``."""
    root = Path(param(params, f"datasets.{dataset}", str, source=source))
    return root if root.is_absolute() else Path(base_dir) / root


def seeded_settings(params: dict, name: str, source: str = "params.yaml") -> dict:
    """The ``name`` section of ``params`` (``eval.eth``) as a dict, with the study's ``seed`` unless it sets one."""
    settings = dict(param(params, name, dict, source=source))
    settings.setdefault("seed", param(params, "seed", int, 0, source=source))
    return settings
