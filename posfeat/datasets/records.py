"""The text records every dataset reader shares: whitespace-separated fields, ``#`` comments, and checked
numbers, each error naming ``<file>:<line>`` and what was expected (:class:`posfeat.io.DataError`); and the one
reader of image-pair lists (``nameA nameB`` per line).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Iterator

from posfeat.io import DataError

PAIR_LAYOUT = "nameA nameB"


def fmt_number(v: float) -> str:
    """A number as the project writes it in text records (9 significant digits)."""
    return f"{v:.9g}"


def iter_records(path: str | os.PathLike, what: str = "text file") -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-comment line of a whitespace-separated text file.

    Blank lines and lines whose first non-blank character is ``#`` are skipped; line numbers are
    1-based. A missing file raises :class:`DataError` saying what was expected (``what``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {what})")
    try:
        with open(path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                s = line.strip()
                if not s or s.startswith("#"):
                    continue
                yield lineno, s.split()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file (expected {what}): {e}") from e


def parse_float(text: str, where: str, field: str) -> float:
    """A finite float, or :class:`DataError` ``"<where>: expected <field> to be a finite number, found …"``."""
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: expected {field} to be a number, found {text!r}") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: expected {field} to be a finite number, found {text!r}")
    return v


def parse_int(text: str, where: str, field: str, positive: bool = True) -> int:
    """An integer (``640`` or ``640.0``), positive unless ``positive=False``; else :class:`DataError`."""
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: expected {field} to be an integer, found {text!r}") from None
    if not math.isfinite(v) or v != int(v):
        raise DataError(f"{where}: expected {field} to be an integer, found {text!r}")
    if positive and v <= 0:
        raise DataError(f"{where}: expected {field} > 0, found {text!r}")
    return int(v)


def check_field_count(fields: list[str], n: int, where: str, layout: str) -> None:
    """Raise :class:`DataError` unless ``len(fields) == n``."""
    if len(fields) != n:
        raise DataError(f"{where}: expected {n} fields ({layout}), found {len(fields)}")


def read_pair_list(
    path: str | os.PathLike,
    known: Iterable[str] | None = None,
    *,
    what: str = "an image pair list (nameA nameB)",
    known_as: str = "a known image",
    unique: bool = False,
    extra_fields: bool = False,
    prefix: str | None = None,
    nonempty: bool = False,
) -> list[tuple[str, str]]:
    """The pairs of a pair list (``nameA nameB`` per line), in file order.

    A pair of an image with itself is an error, and so is a line with another number of fields (with
    ``extra_fields``, fields after the second are allowed and ignored, as in hloc's and COLMAP's lists). With
    ``known`` (a set, or a dict keyed by name), every name must be in it (``known_as`` says what it should have
    been); ``prefix`` (e.g. ``"images/"``) is dropped from a name that is not known with it. ``unique``: a pair
    listed twice, in either order, is an error. ``nonempty``: a list without pairs is an error. Every error names
    the file and line.
    """
    path = Path(path)
    known_set = set(known) if known is not None else None
    pairs: list[tuple[str, str]] = []
    seen: dict[frozenset, int] = {}
    for lineno, fields in iter_records(path, what):
        where = f"{path}:{lineno}"
        if extra_fields and len(fields) >= 2:
            fields = fields[:2]
        check_field_count(fields, 2, where, PAIR_LAYOUT)
        if prefix is not None and known_set is not None:
            fields = [n[len(prefix) :] if n.startswith(prefix) and n not in known_set else n for n in fields]
        a, b = fields
        if a == b:
            raise DataError(f"{where}: expected two different images, found {a!r} paired with itself")
        if known_set is not None:
            for n in (a, b):
                if n not in known_set:
                    raise DataError(f"{where}: expected {known_as}, found unknown {n!r}")
        if unique:
            key = frozenset((a, b))
            if key in seen:
                raise DataError(f"{where}: expected each pair once, found ({a}, {b}) again (first on line {seen[key]})")
            seen[key] = lineno
        pairs.append((a, b))
    if nonempty and not pairs:
        raise DataError(f"{path}: expected at least one pair '{PAIR_LAYOUT}', found none")
    return pairs


def write_pair_list(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> None:
    """Write ``nameA nameB`` lines, the layout :func:`read_pair_list` reads."""
    Path(path).write_text("".join(f"{a} {b}\n" for a, b in pairs))
