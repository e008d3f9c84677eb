"""``posfeat photos``: your own photo collections as a PoSFeat training set."""

from __future__ import annotations

import argparse
import json

NAME = "photos"
HELP = (
    "turn your own photo collections (one folder per place, EXIF optional) into a PoSFeat training set in the "
    "MegaDepth layout"
)


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags (the defaults are :class:`~posfeat.data.photos.PhotosConfig`'s)."""
    s.add_argument(
        "--images",
        required=True,
        help="a folder of photos of one place, or one such folder per place "
        "(a folder with sparse/ and images/ uses that COLMAP model)",
    )
    s.add_argument("--out", required=True, help="output MegaDepth-layout root (<out>/<place>/dense0/aligned/...)")
    s.add_argument("--manifest", help="also write the metadata manifest here (datasets.megadepth_metadata)")
    s.add_argument("--max-keypoints", type=int, default=8192, help="SIFT keypoints per photo for the reconstruction")
    s.add_argument(
        "--max-image-size",
        type=int,
        default=1600,
        help="px; larger photos are downscaled (cameras follow); 0 keeps full size",
    )
    s.add_argument(
        "--min-covisibility",
        type=float,
        default=0.1,
        help="a pair is written when each image sees this fraction of the other's 3D points",
    )
    s.add_argument("--rot-thr", type=float, default=80.0, help="degrees; pairs turned more are not written")
    s.add_argument("--seed", type=int, default=0, help="RANSAC and mapper seed")
    s.add_argument("--num-threads", type=int, default=1, help="COLMAP threads (1: repeatable; -1: all cores)")


def run(args: argparse.Namespace) -> int:
    """Build the training set and print its summary."""
    from posfeat.data.photos import PhotosConfig, build_training_set
    from posfeat.utils import announce, get_logger

    get_logger("posfeat")
    cfg = PhotosConfig(
        max_keypoints=args.max_keypoints,
        max_image_size=args.max_image_size or None,
        min_covisibility=args.min_covisibility,
        rot_thr=args.rot_thr,
        seed=args.seed,
        num_threads=args.num_threads,
    )
    announce("photos", "cpu", "COLMAP SIFT + incremental mapping", f"photo collections under {args.images}")
    summary = build_training_set(args.images, args.out, cfg, manifest=args.manifest)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "per_collection")}, indent=2))
    return 0
