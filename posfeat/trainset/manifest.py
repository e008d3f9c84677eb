"""A fingerprint of a MegaDepth root's *metadata* (``img_cam.txt`` and ``pairs.txt``), and of the demo world's
images, never of a real dataset's images.

A big real dataset is an immutable external input: DVC stages must not hash hundreds of GB
of images. The ``prepare_megadepth`` and training stages therefore depend on one small JSON file, the
*metadata manifest*, that lists every scene folder's metadata files with their MD5. The demo stage writes
it for the demo world; for the real data it is made once with

    python -m posfeat megadepth-manifest --root /data/MegaDepth_CAPS --out data/megadepth_metadata.json

and ``prepare_megadepth`` refuses to run when the manifest no longer matches the metadata on disk (so a
changed ``img_cam.txt`` cannot silently go unnoticed by DVC).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from posfeat.datasets.megadepth import find_scenes
from posfeat.io import DataError, read_json, write_json

METADATA_FILES = ("img_cam.txt", "pairs.txt")
MANIFEST_VERSION = 1


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metadata_manifest(root: str | os.PathLike) -> dict:
    """``{"version", "files": {"<scene>/<dense>/aligned/<file>": md5}}`` for every scene folder under ``root``.

    Raises :class:`DataError` when the root has no ``<scene>/dense*/aligned`` folder or a folder lacks a
    metadata file.
    """
    root = Path(root)
    scenes = find_scenes(root)
    if not scenes:
        raise DataError(f"{root}: no MegaDepth scene folder found (expected <root>/<scene_id>/dense*/aligned)")
    files: dict[str, str] = {}
    for scene in scenes:
        for name in METADATA_FILES:
            path = scene.path / name
            if not path.is_file():
                raise DataError(f"{path}: file not found (expected the scene's {name})")
            files[f"{scene.key}/aligned/{name}"] = _md5(path)
    return {"version": MANIFEST_VERSION, "files": files}


def images_digest(root: str | os.PathLike) -> str:
    """One MD5 over the relative paths and MD5s of every file in the scene folders under ``root``."""
    h = hashlib.md5()
    for scene in find_scenes(root):
        for path in sorted(p for p in scene.path.rglob("*") if p.is_file()):
            h.update(f"{scene.key}/aligned/{path.relative_to(scene.path).as_posix()} {_md5(path)}\n".encode())
    return h.hexdigest()


def write_metadata_manifest(root: str | os.PathLike, out: str | os.PathLike, with_images: bool = False) -> dict:
    """Compute :func:`metadata_manifest` of ``root`` and write it atomically to ``out``.

    ``with_images``: also an ``images`` entry (:func:`images_digest`), so that the stages depending on the
    manifest rerun when an image changes. For the demo world, whose images change with the renderer; never for
    a real dataset (hundreds of GB, immutable).
    """
    manifest = metadata_manifest(root)
    if with_images:
        manifest["images"] = images_digest(root)
    write_json(out, manifest)
    return manifest


def check_metadata_manifest(root: str | os.PathLike, manifest_path: str | os.PathLike) -> dict:
    """Raise :class:`DataError` unless ``manifest_path`` describes the metadata now under ``root``."""
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise DataError(
            f"{manifest_path}: metadata manifest not found; make it with "
            f"`python -m posfeat megadepth-manifest --root {root} --out {manifest_path}`"
        )
    stored = read_json(manifest_path)
    if not isinstance(stored, dict) or "files" not in stored:
        raise DataError(f"{manifest_path}: expected a metadata manifest with a 'files' mapping")
    current = metadata_manifest(root)
    if stored["files"] != current["files"]:
        changed = sorted(set(stored["files"].items()) ^ set(current["files"].items()))
        first = changed[0][0] if changed else "?"
        raise DataError(
            f"{manifest_path}: out of date for {root} ({len(changed)} differing entries, e.g. {first}); "
            f"rerun `python -m posfeat megadepth-manifest --root {root} --out {manifest_path}`"
        )
    return current
