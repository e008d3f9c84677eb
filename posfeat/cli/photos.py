"""``posfeat photos``: your own photo collections as a PoSFeat training set."""

from __future__ import annotations

import argparse
import json

from posfeat.cli.flags import add_config_flags, given_settings
from posfeat.photos.config import PhotosConfig

NAME = "photos"
HELP = (
    "turn your own photo collections (one folder per place, EXIF optional) into a PoSFeat training set in the "
    "MegaDepth layout"
)


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags; the settings are :class:`~posfeat.photos.config.PhotosConfig`'s fields."""
    s.add_argument(
        "--images",
        required=True,
        help="a folder of photos of one place, or one such folder per place "
        "(a folder with sparse/ and images/ uses that COLMAP model)",
    )
    s.add_argument("--out", required=True, help="output MegaDepth-layout root (<out>/<place>/dense0/aligned/...)")
    s.add_argument("--manifest", help="also write the metadata manifest here (datasets.megadepth_metadata)")
    add_config_flags(s, PhotosConfig, "photos")


def run(args: argparse.Namespace) -> int:
    """Build the training set and print its summary."""
    from posfeat.photos.build import build_training_set
    from posfeat.utils import announce, get_logger

    get_logger("posfeat")
    settings = given_settings(args, PhotosConfig)
    if settings.get("max_image_size") == 0:
        settings["max_image_size"] = None
    cfg = PhotosConfig.from_dict(settings, what="photos flags")
    announce("photos", "cpu", "COLMAP SIFT + incremental mapping", f"photo collections under {args.images}")
    summary = build_training_set(args.images, args.out, cfg, manifest=args.manifest)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "per_collection")}, indent=2))
    return 0
