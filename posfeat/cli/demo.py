"""``posfeat demo``: render the demo world."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "render the demo world (MegaDepth, HPatches, Aachen and ETH layouts)"


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="random seed of the demo world")


def run(args: argparse.Namespace) -> int:
    """Render the demo world (default sizes) into ``--out`` atomically, with ``megadepth_metadata.json`` (the
    MegaDepth metadata manifest)."""
    from posfeat.demo import generate_demo
    from posfeat.io import atomic_path
    from posfeat.trainset.manifest import write_metadata_manifest
    from posfeat.utils import get_logger

    logger = get_logger("posfeat.demo.generate")

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        logger.info("replacing %s", out)
    with atomic_path(out) as tmp:
        summary = generate_demo(tmp, seed=args.seed)
        write_metadata_manifest(tmp / "megadepth", tmp / "megadepth_metadata.json", with_images=True)
    logger.info("demo world written to %s in %.1f s (%.1f MB)", out, summary["seconds"], summary["bytes"] / 1e6)
    return 0
