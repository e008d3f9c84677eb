"""``posfeat eval-hpatches``: HPatches mean matching accuracy (D2-Net protocol)."""

from __future__ import annotations

import argparse

NAME = "eval-hpatches"
HELP = "HPatches MMA (D2-Net protocol)"


def method_features(text: str) -> tuple[str, str]:
    """``NAME=FEATURES.h5`` → ``(name, path)``."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=FEATURES.h5, got {text!r}")
    name, path = text.split("=", 1)
    return name, path


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    s.add_argument("--root", required=True, help="hpatches-sequences-release folder")
    s.add_argument(
        "--features",
        required=True,
        nargs="+",
        type=method_features,
        metavar="NAME=FEATURES.h5",
        help="one feature file per method",
    )
    s.add_argument("--out", required=True, help="metrics JSON")
    s.add_argument("--plot", help="PNG figure of the MMA curves")
    s.add_argument("--curves", help="CSV of the MMA curves (method, threshold, overall, illumination, viewpoint)")
    s.add_argument("--no-exclude", action="store_true", help="keep the 8 sequences D2-Net drops")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def run(args: argparse.Namespace) -> int:
    """Evaluate every method, write the metrics (and curves, figure) and print the table."""
    from posfeat.datasets.hpatches import D2NET_EXCLUDE
    from posfeat.evaluation.hpatches import evaluate_hpatches, format_table, write_curves
    from posfeat.io import write_json
    from posfeat.utils import get_logger

    get_logger("posfeat")
    features = dict(args.features)
    if len(features) != len(args.features):
        raise SystemExit("eval-hpatches: duplicate method names in --features")
    exclude = () if args.no_exclude else D2NET_EXCLUDE
    results = evaluate_hpatches(args.root, features, exclude=exclude, device=args.device)
    write_json(args.out, results)
    if args.curves:
        write_curves(results, args.curves)
    if args.plot:
        from posfeat.evaluation.plots import plot_mma_curves

        plot_mma_curves(results, args.plot)
    print(format_table(results))
    return 0
