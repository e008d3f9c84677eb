"""``posfeat convert-official``: the official checkpoint as one model file."""

from __future__ import annotations

import argparse
import json

NAME = "convert-official"
HELP = "convert the official backbone.pth + localheader.pth to one model .pt"


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    s.add_argument("backbone", help="official backbone state dict (backbone.pth)")
    s.add_argument("localheader", help="official detector state dict (localheader.pth)")
    s.add_argument("--out", required=True, help="output model .pt (the format of models/posfeat.pt)")
    s.add_argument("--keep-global-map", action="store_true", help="keep the unused CAPS global head (conv_coarse)")


def run(args: argparse.Namespace) -> int:
    """Convert and print the model configuration."""
    from posfeat.convert import convert_official
    from posfeat.utils import get_logger

    log = get_logger("posfeat")
    config = convert_official(args.backbone, args.localheader, args.out, keep_global_map=args.keep_global_map)
    log.info("wrote %s", args.out)
    print(json.dumps({"out": str(args.out), "config": config}, indent=2))
    return 0
