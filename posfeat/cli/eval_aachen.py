"""``posfeat eval-aachen``: Aachen Day-Night localization with pycolmap, at the protocol's settings."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "eval-aachen"
HELP = "Aachen Day-Night localization with pycolmap"


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags; the settings are :class:`~posfeat.evaluation.aachen.config.AachenConfig`'s fields."""
    from posfeat.cli.flags import add_config_flags
    from posfeat.evaluation.aachen.config import AachenConfig

    s.add_argument("--root", required=True, help="Aachen dataset root")
    s.add_argument("--features", required=True, help="features .h5 (names relative to images/images_upright)")
    s.add_argument("--out", required=True, help="output folder: metrics JSON and benchmark submission file")
    s.add_argument(
        "--method-name", default=None, help="name of the method in the outputs; None: the method the feature file holds"
    )
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_config_flags(s, AachenConfig, "eval.aachen")


def run(args: argparse.Namespace) -> int:
    """Localize the queries; write ``OUT/<name>.txt`` (the submission), ``OUT/<name>.json`` (metrics, timings,
    counts, every query's outcome: the DVC stage's result file), ``OUT/metrics.json`` (``{name: metrics}``) and
    the work folder ``OUT/<name>_work`` (database, triangulated model). The name defaults to the method the
    feature file holds (``sift``, ``posfeat``, ``posfeat_sift``)."""
    from posfeat.cli.flags import given_settings
    from posfeat.evaluation.aachen.evaluate import AachenConfig, evaluate_aachen
    from posfeat.evaluation.aachen.results import format_metrics, write_results
    from posfeat.io import feature_method_name, write_json
    from posfeat.utils import get_logger

    get_logger("posfeat")
    out = Path(args.out)
    name = args.method_name or feature_method_name(args.features)
    if not name or "/" in name or name.startswith("."):
        raise SystemExit(f"eval-aachen: --method-name must be a plain name, got {name!r}")
    cfg = AachenConfig.from_dict(given_settings(args, AachenConfig), what="eval-aachen flags")
    result = evaluate_aachen(args.root, args.features, out / f"{name}_work", cfg, device=args.device)
    write_results(out, name, result)
    write_json(out / "metrics.json", {name: result.metrics})
    print(format_metrics({name: result.metrics}))
    return 0
