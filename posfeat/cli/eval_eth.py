"""``posfeat eval-eth``: the ETH local feature benchmark on one scene, reconstructed with pycolmap.

The defaults are :class:`~posfeat.evaluation.eth.ETHConfig`'s (a test checks them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "eval-eth"
HELP = "ETH local feature benchmark: reconstruct one scene with pycolmap"


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    s.add_argument("--root", required=True, help="the scene folder (with images/, and optionally database.db)")
    s.add_argument(
        "--features", required=True, help="features .h5 (extracted from the ETH root, the scene or its images/ folder)"
    )
    s.add_argument("--out", required=True, help="statistics JSON")
    s.add_argument("--workdir", help="where the database and models go; None: a folder beside --out")
    s.add_argument(
        "--ratio",
        type=float,
        default=None,
        help="Lowe ratio on both sides of the mutual NN (the official PoSFeat script: 0.75); None: off",
    )
    s.add_argument(
        "--max-exhaustive-images",
        type=int,
        default=1600,
        help="exhaustive pairs up to this many images, else retrieval pairs (k nearest by bag of words)",
    )
    s.add_argument("--retrieval-neighbors", type=int, default=50, help="retrieval pairs: neighbours per image")
    s.add_argument(
        "--pairs",
        help="pair list 'nameA nameB' (names relative to images/); None: the scene's own "
        "pairs.txt / image_pairs.txt / match_list.txt if any",
    )
    s.add_argument("--seed", type=int, default=0, help="every random seed: RANSAC, retrieval, mapper")
    s.add_argument(
        "--focal-init",
        choices=["two_view", "guess"],
        default="two_view",
        help="initial focal length of photos without EXIF: self-calibrated from the verified pairs "
        "(two_view) or COLMAP's 1.2·max(w, h) (guess)",
    )
    s.add_argument(
        "--mapping-attempts",
        type=int,
        default=3,
        help="mapper runs with seeds seed, seed+1, ... while the largest model leaves images out",
    )
    s.add_argument("--num-threads", type=int, default=-1, help="COLMAP threads (-1: all cores)")
    s.add_argument(
        "--no-database",
        action="store_true",
        help="ignore the scene's database.db (cameras from EXIF or guessed instead)",
    )
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def run(args: argparse.Namespace) -> int:
    """Reconstruct the scene; write ``{scene: statistics}`` to ``--out`` (the database and models to
    ``--workdir``, default ``<out without .json>_work`` beside it) and print the table."""
    from posfeat.evaluation.eth import ETHConfig, evaluate_scene
    from posfeat.evaluation.eth_results import format_table
    from posfeat.io import write_json
    from posfeat.utils import get_logger

    get_logger("posfeat")
    out = Path(args.out)
    workdir = Path(args.workdir) if args.workdir else out.with_name(out.stem + "_work")
    cfg = ETHConfig(
        ratio=None if args.ratio is None or args.ratio >= 1.0 else args.ratio,
        max_exhaustive_images=args.max_exhaustive_images,
        retrieval_neighbors=args.retrieval_neighbors,
        pairs_file=args.pairs,
        use_scene_database=not args.no_database,
        seed=args.seed,
        focal_init=args.focal_init,
        mapping_attempts=args.mapping_attempts,
        num_threads=args.num_threads,
    )
    res = evaluate_scene(args.root, args.features, workdir, cfg, device=args.device)
    write_json(out, {res.scene: res.to_dict()})
    print(format_table({"features": {res.scene: res.stats}}))
    print(res.message)
    return 0
