"""Find the feature-file group of every image an evaluation needs, whatever folder was given to ``extract``.

``python -m posfeat extract --images DIR`` names each image relative to ``DIR``. An evaluation expects
names relative to its dataset root (ETH: ``<Scene>/images/x.jpg``; Aachen: ``db/x.jpg`` relative to
``images/images_upright``; HPatches: ``<seq>/1.ppm``), but a user naturally extracts from a folder above
or below that root: ``extract --images Fountain/images`` gives ``x.jpg``, ``extract --images AACHEN``
gives ``images/images_upright/db/x.jpg``. :func:`resolve_feature_names` finds the one uniform rule that
maps every expected name to a group of the file:

* the name itself, or with its first ``k`` path components dropped (the features were extracted from a
  folder below the root), tried from the fullest name down;
* or the name below a common prefix (the features were extracted from a folder above the root).

A rule must cover every expected image; otherwise the error names the file, how many images are
missing, examples, and the forms that were tried.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from posfeat.io import DataError


def _strip(name: str, k: int) -> str | None:
    parts = name.split("/")
    return "/".join(parts[k:]) if k < len(parts) else None


def resolve_feature_names(
    available: Iterable[str], expected: Sequence[str], path: str = "features", what: str = "images", hint: str = ""
) -> dict[str, str]:
    """``{expected name: group name}`` under one rule (strip ``k`` leading components, or add a prefix).

    Args:
        available: the group names of the feature file (images with keypoints).
        expected: the names the evaluation wants, relative to its dataset root.
        path: the feature file (for the error message).
        what: what the images are (for the error message).
        hint: appended to the error message.

    Raises:
        DataError: no single rule covers every expected name.
    """
    names = set(available)
    expected = list(expected)
    if not expected:
        return {}
    depth = max(len(e.split("/")) for e in expected)
    best: tuple[int, str, dict[str, str]] | None = None
    for k in range(depth):
        keys = {e: _strip(e, k) for e in expected}
        found = {e: v for e, v in keys.items() if v is not None and v in names}
        if len(found) == len(expected) and len(set(found.values())) == len(expected):
            return found
        if best is None or len(found) > best[0]:
            best = (len(found), f"first {k} component(s) dropped" if k else "as is", found)
    # a folder above the root: every expected name appears under one common prefix
    e0 = expected[0]
    prefixes = sorted({n[: -len(e0)] for n in names if n.endswith("/" + e0)}, key=len)
    for p in prefixes:
        found = {e: p + e for e in expected if p + e in names}
        if len(found) == len(expected):
            return found
        if len(found) > best[0]:
            best = (len(found), f"below prefix {p!r}", found)
    n_found, rule, found = best
    missing = [e for e in expected if e not in found]
    raise DataError(
        f"{path}: no features for {len(missing)} of {len(expected)} {what}, e.g. {missing[:3]} "
        f"(best rule: names {rule}, matching {n_found}; expected groups named like {expected[0]!r} "
        f"or with leading folders dropped or added){(' ' + hint) if hint else ''}"
    )


__all__ = ["resolve_feature_names"]
