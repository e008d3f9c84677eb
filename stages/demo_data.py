"""DVC stage ``demo_data``: render the demo world into ``data/demo``.

Reads params ``demo`` (and nothing else); writes ``data/demo/{megadepth,hpatches,aachen,eth}`` and
``data/demo/megadepth_metadata.json`` (the metadata manifest that ``prepare_megadepth`` depends on instead
of the images). Everything is rendered into a temporary folder beside ``data/demo`` that replaces it only
when the whole world, manifest included, has been written (:func:`posfeat.io.atomic_path`), so a failed or
interrupted run never leaves a half-written world behind.

Run: ``python -m stages.demo_data``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.demo import DEFAULT_SIZES, generate_demo
from posfeat.io import atomic_path
from posfeat.settings import ParamError, check_param
from posfeat.trainset.manifest import write_metadata_manifest
from posfeat.utils import announce, get_logger
from stages.common import ROOT, load_params, stage_entry

OUT_DIR = Path("data/demo")
MANIFEST_NAME = "megadepth_metadata.json"

log = get_logger(__name__)


def demo_config(p: dict) -> tuple[int, dict]:
    """``(seed, sizes)`` for :func:`generate_demo` from the ``demo`` params section.

    Every key other than ``seed`` must be a :data:`posfeat.demo.DEFAULT_SIZES` key (unknown keys are an
    error, so a typo in ``params.yaml`` cannot be silently ignored); ``*_size`` values become ``(W, H)``.
    """
    p = dict(p)
    seed = check_param(p.pop("seed", 0), int, "demo.seed")
    unknown = sorted(set(p) - set(DEFAULT_SIZES))
    if unknown:
        raise ParamError(f"params.yaml demo: unknown keys {unknown} (known: seed, {', '.join(sorted(DEFAULT_SIZES))})")
    for k, v in p.items():  # the type of each default: int counts, float fractions, (W, H) sizes
        d = DEFAULT_SIZES[k]
        check_param(v, tuple[int, int] if isinstance(d, tuple) else type(d), f"demo.{k}")
    sizes = {k: tuple(int(x) for x in v) if k.endswith("_size") else v for k, v in p.items()}
    return seed, sizes


def main(params: dict | None = None, base_dir: str | Path = ROOT, workers: int | None = None) -> dict:
    """Render the demo world with ``params["demo"]`` (default: ``params.yaml``) into ``base_dir/data/demo``.

    An existing ``data/demo`` is replaced only once the new world is complete. ``workers`` is the number of
    rendering processes (default: the CPU count; the files do not depend on it). Returns the generator's
    summary (counts per dataset, ``seconds``, ``bytes``) plus ``manifest_files``.
    """
    params = load_params() if params is None else params
    seed, sizes = demo_config(params["demo"])
    out = Path(base_dir) / OUT_DIR
    if out.exists():
        log.info("replacing %s", out)
    announce("stages.demo_data", data=f"the demo world, seed {seed}, into {out}")
    with atomic_path(out) as tmp:
        summary = generate_demo(tmp, seed=seed, workers=workers, **sizes)
        manifest = write_metadata_manifest(tmp / "megadepth", tmp / MANIFEST_NAME, with_images=True)
    summary["manifest_files"] = len(manifest["files"])
    md = summary["megadepth"]["scenes"]
    log.info(
        "demo world written to %s in %.1f s (%d processes), %.1f MB: %d MegaDepth scenes (%d pairs), "
        "%d+%d HPatches sequences, %d ETH scenes, Aachen %d db + %d day + %d night queries",
        out,
        summary["seconds"],
        summary["workers"],
        summary["bytes"] / 1e6,
        len(md),
        sum(s["pairs"] for s in md.values()),
        len(summary["hpatches"]["i"]),
        len(summary["hpatches"]["v"]),
        len(summary["eth"]),
        summary["aachen"]["db_images"],
        summary["aachen"]["day_queries"],
        summary["aachen"]["night_queries"],
    )
    return summary


if __name__ == "__main__":
    stage_entry(main, "stages.demo_data")
