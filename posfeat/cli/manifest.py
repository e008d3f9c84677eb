"""``posfeat megadepth-manifest``: fingerprint a MegaDepth root's metadata for DVC."""

from __future__ import annotations

import argparse

NAME = "megadepth-manifest"
HELP = "fingerprint a MegaDepth root's img_cam.txt/pairs.txt for DVC"


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    s.add_argument("--root", required=True, help="MegaDepth root (<root>/<scene>/dense*/aligned)")
    s.add_argument(
        "--out", required=True, help="manifest JSON (the file params.yaml's datasets.megadepth_metadata names)"
    )


def run(args: argparse.Namespace) -> int:
    """Write the manifest and say how many files it covers."""
    from posfeat.trainset.manifest import write_metadata_manifest

    manifest = write_metadata_manifest(args.root, args.out)
    print(f"wrote {args.out}: {len(manifest['files'])} metadata files")
    return 0
