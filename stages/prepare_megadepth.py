"""DVC stage ``prepare_megadepth``: the MegaDepth pair index and its report, from metadata only.

Reads params ``datasets.megadepth``, ``datasets.megadepth_metadata``, ``prepare.*`` and ``seed``; writes
``data/prepared/megadepth.json`` (the pair index the training stages read), its report
``results/prepare.json`` (flat counts) and the headline ``metrics/prepare.json`` (pairs, images, scenes).
It first checks that the metadata manifest (the file DVC tracks instead of the dataset) still matches the
``img_cam.txt``/``pairs.txt`` files on disk, so a stale manifest is a clear error rather than a silently
outdated index. Images are checked for existence only, never opened or hashed.

Run: ``python -m stages.prepare_megadepth``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.evaluation.headline import prepare_headline
from posfeat.io import write_json
from posfeat.settings import param
from posfeat.trainset.manifest import check_metadata_manifest
from posfeat.trainset.prepare import prepare_megadepth
from posfeat.utils import announce, get_logger
from stages.common import INDEX_PATH, ROOT, load_params, stage_entry

METRICS_PATH = Path("metrics/prepare.json")
REPORT_PATH = Path("results/prepare.json")

log = get_logger(__name__)


def _resolve(path: str | Path, base_dir: Path) -> Path:
    """``path`` if absolute, else ``base_dir / path``."""
    path = Path(path)
    return path if path.is_absolute() else Path(base_dir) / path


def _scene_id(s: str | int) -> str:
    """A scene id from params: YAML may turn an unquoted ``0015`` into the int 15; ids are 4-digit strings."""
    return f"{s:04d}" if isinstance(s, int) else str(s)


def main(params: dict | None = None, base_dir: str | Path = ROOT) -> tuple[dict, dict]:
    """Run the stage with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``.

    Returns ``(index, report)`` as written. Raises :class:`posfeat.io.DataError` when the metadata
    manifest is missing or stale, or when the metadata is malformed; nothing is written then.
    """
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    root = param(params, "datasets.megadepth", str)
    root_path = _resolve(root, base_dir)
    manifest = check_metadata_manifest(root_path, _resolve(param(params, "datasets.megadepth_metadata", str), base_dir))
    announce(
        "stages.prepare_megadepth",
        data=f"MegaDepth under {root_path} ({len(manifest['files'])} metadata files, manifest up to date)",
    )
    index, report = prepare_megadepth(
        root_path,
        banned_scenes=[_scene_id(s) for s in param(params, "prepare.banned_scenes", list[str | int])],
        max_pairs_per_scene=param(params, "prepare.max_pairs_per_scene", int),
        rot_thr=float(param(params, "prepare.rot_thr", float)),
        val_fraction=float(param(params, "prepare.val_fraction", float)),
        seed=param(params, "seed", int),
    )
    index["root"] = root  # as given in params.yaml (relative to the repository root)
    write_json(base_dir / INDEX_PATH, index)
    write_json(base_dir / REPORT_PATH, report)
    write_json(base_dir / METRICS_PATH, prepare_headline(report))
    log.info("wrote %s and %s", base_dir / INDEX_PATH, base_dir / METRICS_PATH)
    return index, report


if __name__ == "__main__":
    stage_entry(main, "stages.prepare_megadepth")
