"""Command-line flags built from a settings dataclass's fields, so that the flags never restate its defaults."""

from __future__ import annotations

import argparse
import dataclasses
import typing


def _element_type(hint) -> type:
    """The scalar type a flag parses for a field annotated ``hint`` (``int | None`` → int, ``tuple[float, ...]``
    → float)."""
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(hint) is tuple:
        return args[0]
    if args:
        return _element_type(args[0])
    return hint


def add_config_flags(parser: argparse.ArgumentParser, cls: type, params_key: str) -> list[str]:
    """One ``--flag`` per field of dataclass ``cls`` whose metadata has ``help`` (and not ``cli: False``); the
    flag is the field's name with dashes, or ``metadata["flag"]`` (``metadata["param"]``: the study's parameter,
    when it is not ``params_key.<field>``).

    A flag not given is absent from the parsed arguments (``argparse.SUPPRESS``), so a caller can tell it from
    the default; its help shows the field's default and ``params_key.<field>``. Booleans become
    ``--x/--no-x``, tuples take one or more values, ``choices`` come from the metadata. Returns the field
    names.
    """
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or not f.metadata.get("cli", True):
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        param = f.metadata.get("param") or f"{params_key}.{f.name}"
        text = f"{f.metadata['help']} (default: {shown}; the study's {param})"
        kind = _element_type(hints[f.name])
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=text)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif f.metadata.get("choices"):
            parser.add_argument(flag, choices=list(f.metadata["choices"]), **common)
        else:
            parser.add_argument(flag, type=kind, nargs="+" if isinstance(f.default, tuple) else None, **common)
        names.append(f.name)
    return names


def given_settings(args: argparse.Namespace, cls: type) -> dict:
    """The fields of ``cls`` that were given on the command line (flags of :func:`add_config_flags`)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
