"""Build the MegaDepth training pair index from metadata only (the ``prepare_megadepth`` stage).

Steps, per scene folder ``<scene_id>/<dense>/aligned`` in sorted order:

1. scenes whose id is in ``banned_scenes`` are dropped without reading them;
2. ``img_cam.txt`` and ``pairs.txt`` are read and validated; every image must exist (existence only:
   no image is opened or hashed). Malformed metadata raises :class:`posfeat.io.DataError`;
3. a folder with more than ``max_pairs_per_scene`` pairs keeps a random ``max_pairs_per_scene`` of them
   (the cap is per dense folder, as in the original code; CAPS scenes almost always have one folder);
4. pairs whose relative rotation angle exceeds ``rot_thr`` degrees are dropped (the original rejected
   them at load time, which gave variable batch sizes; here they never enter the index);
5. the remaining pairs are split into train/val: ``n_val = round(val_fraction · n)`` clipped to
   ``[1, n − 1]`` when ``n ≥ 2`` and ``val_fraction > 0``; a folder with a single pair gives it to train.

Randomness (cap and split) uses a NumPy ``Generator`` seeded with ``(seed, crc32("<scene>/<dense>"))``
per folder, so a folder's selection depends only on the seed and the folder itself, not on which other
scenes are present. Kept pairs stay in file order within each split.

Index format (``data/prepared/megadepth.json``)::

    {"root": "<dataset root as given>",
     "images": {"<scene>/<dense>/aligned/images/<name>": {"width", "height", "K" 3x3, "R" 3x3, "t" [3]}},
     "train": [[keyA, keyB], ...], "val": [[keyA, keyB], ...]}
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from tqdm import tqdm

from posfeat.datasets.camera import Camera
from posfeat.datasets.megadepth import BANNED_SCENES, SceneDir, find_scenes, load_scene
from posfeat.geometry import relative_pose, rotation_angle_deg
from posfeat.io import DataError
from posfeat.utils import get_logger

log = get_logger(__name__)


def folder_rng(seed: int, key: str) -> np.random.Generator:
    """The per-folder random generator: seeded with ``(seed, crc32(key))``."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])


def pair_rotation_deg(cam1: Camera, cam2: Camera) -> float:
    """Relative rotation angle (degrees) between two world→camera poses."""
    R, _ = relative_pose(cam1.R, cam1.t, cam2.R, cam2.t)
    return rotation_angle_deg(R)


def pair_rotations_deg(cams: dict[str, Camera], pairs: list[tuple[str, str]]) -> np.ndarray:
    """Relative rotation angles (degrees) of many pairs at once, ``(len(pairs),)`` float64.

    Same value as :func:`pair_rotation_deg`: ``arccos((tr(R2 R1^T) − 1) / 2)``, using
    ``tr(R2 R1^T) = Σ R1 ⊙ R2``, clipped for round-off.
    """
    if not pairs:
        return np.zeros(0)
    R1 = np.stack([cams[a].R for a, _ in pairs])
    R2 = np.stack([cams[b].R for _, b in pairs])
    cos = (np.einsum("nij,nij->n", R1, R2) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def num_val_pairs(n: int, val_fraction: float) -> int:
    """Validation pairs for a folder with ``n`` kept pairs: ``round(f·n)`` clipped to ``[1, n−1]`` if ``n ≥ 2``."""
    if n < 2 or val_fraction <= 0:
        return 0
    return int(min(max(int(np.floor(val_fraction * n + 0.5)), 1), n - 1))


def image_key(scene: SceneDir, name: str) -> str:
    """``"<scene>/<dense>/aligned/images/<name>"`` (path relative to the dataset root)."""
    return f"{scene.scene_id}/{scene.dense}/aligned/images/{name}"


def prepare_megadepth(
    root: str | os.PathLike,
    banned_scenes: Iterable[str] = BANNED_SCENES,
    max_pairs_per_scene: int = 5000,
    rot_thr: float = 80.0,
    val_fraction: float = 0.1,
    seed: int = 0,
    check_images: bool = True,
) -> tuple[dict, dict]:
    """Build the pair index and the report (see the module docstring for the rules).

    Args:
        root: MegaDepth root (``<root>/<scene_id>/dense*/aligned``); stored as given in ``index["root"]``.
        banned_scenes: scene ids to drop (IMC test scenes).
        max_pairs_per_scene: cap on the pairs of one dense folder (random, seeded).
        rot_thr: pairs with a relative rotation above this many degrees are dropped (``≤`` is kept).
        val_fraction: fraction of each folder's kept pairs that goes to validation.
        seed: seed of the cap and of the split.
        check_images: require every image of ``img_cam.txt`` to exist (existence only).

    Returns:
        ``(index, report)``; the report is flat: integer counts only (it is the stage's DVC metrics file).
        Scene ids kept and dropped are logged.
    """
    folders = _check_request(root, max_pairs_per_scene, val_fraction)
    banned = {str(s) for s in banned_scenes}

    out = _Index(images={}, train=[], val=[])
    images, train, val = out.images, out.train, out.val
    counts = dict(pairs_total=0, pairs_dropped_cap=0, pairs_dropped_rotation=0, pairs_kept=0)
    scenes_all = sorted({f.scene_id for f in folders})
    scenes_banned = sorted(s for s in scenes_all if s in banned)
    pairs_per_scene: dict[str, int] = {}

    todo = [f for f in folders if f.scene_id not in banned]
    for folder in tqdm(todo, desc="prepare megadepth", unit="folder", disable=len(todo) < 20):
        kept = _add_folder(folder, check_images, max_pairs_per_scene, rot_thr, val_fraction, seed, out, counts)
        pairs_per_scene[folder.scene_id] = pairs_per_scene.get(folder.scene_id, 0) + kept

    scenes_empty = sorted(s for s, n in pairs_per_scene.items() if n == 0)
    scenes_kept = sorted(s for s, n in pairs_per_scene.items() if n > 0)
    if not train and not val:
        raise DataError(
            f"{root}: no pair left after dropping banned scenes {scenes_banned} and pairs rotated by more than "
            f"{rot_thr:g} degrees ({counts['pairs_total']} pairs listed)"
        )
    index = {"root": str(root), "images": images, "train": train, "val": val}
    report = {
        "scenes_total": len(scenes_all),
        "scenes_kept": len(scenes_kept),
        "scenes_dropped": len(scenes_banned) + len(scenes_empty),
        "scenes_dropped_banned": len(scenes_banned),
        "scenes_dropped_no_pairs": len(scenes_empty),
        "folders_read": len(todo),
        **counts,
        "pairs_train": len(train),
        "pairs_val": len(val),
        "images": len(images),
    }
    _log_report(report, scenes_banned, scenes_empty, rot_thr)
    return index, report


def _check_request(root, max_pairs_per_scene: int, val_fraction: float) -> list[SceneDir]:
    """The dense folders under ``root``; a ``ValueError`` for bad settings, a :class:`DataError` for none."""
    if max_pairs_per_scene < 1:
        raise ValueError(f"max_pairs_per_scene must be >= 1, got {max_pairs_per_scene}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    folders = find_scenes(root)
    if not folders:
        raise DataError(f"{root}: expected MegaDepth scene folders <scene_id>/dense*/aligned, found none")
    return folders


@dataclass
class _Index:
    """The pair index being built: image name → camera, training and validation pairs."""

    images: dict[str, dict]
    train: list[list[str]]
    val: list[list[str]]


def _add_folder(
    folder: SceneDir,
    check_images: bool,
    max_pairs: int,
    rot_thr: float,
    val_fraction: float,
    seed: int,
    out: _Index,
    counts: dict[str, int],
) -> int:
    """Cap, filter and split one dense folder's pairs into ``out`` (counting into ``counts``); returns the
    number of pairs kept."""
    cams, pairs = load_scene(folder, check_images=check_images)
    counts["pairs_total"] += len(pairs)
    rng = folder_rng(seed, folder.key)
    if len(pairs) > max_pairs:
        keep = np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))
        counts["pairs_dropped_cap"] += len(pairs) - max_pairs
        pairs = [pairs[i] for i in keep]
    angles = pair_rotations_deg(cams, pairs)
    kept = [pair for pair, angle in zip(pairs, angles) if angle <= rot_thr]
    counts["pairs_dropped_rotation"] += len(pairs) - len(kept)
    counts["pairs_kept"] += len(kept)
    n_val = num_val_pairs(len(kept), val_fraction)
    is_val = np.zeros(len(kept), bool)
    if n_val:
        is_val[rng.permutation(len(kept))[:n_val]] = True
    for (a, b), v in zip(kept, is_val):
        ka, kb = image_key(folder, a), image_key(folder, b)
        (out.val if v else out.train).append([ka, kb])
        out.images.setdefault(ka, cams[a].to_dict())
        out.images.setdefault(kb, cams[b].to_dict())
    log.debug("%s: %d pairs kept (%d val)", folder.key, len(kept), n_val)
    return len(kept)


def _log_report(report: dict, scenes_banned: list[str], scenes_empty: list[str], rot_thr: float) -> None:
    """One log line of what :func:`prepare_megadepth` kept and dropped."""
    log.info(
        "megadepth: %d scenes kept, %d dropped (banned %s, without pairs %s); pairs %d listed, %d capped, "
        "%d rotated > %g deg, %d kept (%d train / %d val), %d images",
        report["scenes_kept"],
        report["scenes_dropped"],
        scenes_banned,
        scenes_empty,
        report["pairs_total"],
        report["pairs_dropped_cap"],
        report["pairs_dropped_rotation"],
        rot_thr,
        report["pairs_kept"],
        report["pairs_train"],
        report["pairs_val"],
        report["images"],
    )
