"""``posfeat eval-eth``: the ETH local feature benchmark on one scene, reconstructed with pycolmap.

The settings flags are :class:`~posfeat.evaluation.eth.config.ETHConfig`'s fields.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from posfeat.cli.flags import add_config_flags, given_settings
from posfeat.evaluation.eth.config import ETHConfig

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
    add_config_flags(s, ETHConfig, "eval.eth")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def run(args: argparse.Namespace) -> int:
    """Reconstruct the scene; write ``{scene: statistics}`` to ``--out`` (the database and models to
    ``--workdir``, default ``<out without .json>_work`` beside it) and print the table."""
    from posfeat.evaluation.eth.evaluate import evaluate_scene
    from posfeat.evaluation.eth.results import format_table, write_results
    from posfeat.utils import get_logger

    get_logger("posfeat")
    out = Path(args.out)
    workdir = Path(args.workdir) if args.workdir else out.with_name(out.stem + "_work")
    settings = given_settings(args, ETHConfig)
    if settings.get("ratio") is not None and settings["ratio"] >= 1.0:
        settings["ratio"] = None
    cfg = ETHConfig.from_dict(settings, what="eval-eth flags")
    res = evaluate_scene(args.root, args.features, workdir, cfg, device=args.device)
    write_results(out, [res])
    print(format_table({"features": {res.scene: res.stats}}))
    print(res.message)
    return 0
