"""``posfeat eval-real``: a trained PoSFeat model against SIFT on a folder of real photographs with ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from posfeat.evaluation.real import PARTS

NAME = "eval-real"
HELP = "a PoSFeat checkpoint against SIFT on real photographs (HPatches, warped and Strecha scenes)"


def work_folder(out: str | Path) -> Path:
    """The default work folder of results file ``out``: ``<out stem>_work`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}_work")


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    s.add_argument("--weights", required=True, help="PoSFeat checkpoint")
    s.add_argument(
        "--data",
        required=True,
        help="the real data folder: hpatches-oxford/<v_seq>/ and megadepth-strecha/<scene>/dense0/aligned/ "
        "(posfeat.evaluation.real.data says how to assemble it)",
    )
    s.add_argument("--out", required=True, help="results JSON")
    s.add_argument(
        "--work",
        help="scratch folder: SIFT cache, derived test sets, feature files; None: <out stem>_work beside --out",
    )
    s.add_argument("--no-eth", action="store_true", help="skip the ETH-layout reconstructions (fast)")
    s.add_argument(
        "--params",
        default="params.yaml",
        help="the study's parameters: PoSFeat extraction settings from extract.hpatches (HPatches, warped sequences, "
        "epipolar precision) and extract.eth (ETH scenes), the ETH pipeline from eval.eth and seed; the options "
        "below override them",
    )
    s.add_argument(
        "--scales",
        type=float,
        nargs="+",
        help="PoSFeat test-time image scales for HPatches and the epipolar precision (extract.hpatches.scales)",
    )
    s.add_argument("--eth-scales", type=float, nargs="+", help="the same for the ETH scenes (extract.eth.scales)")
    s.add_argument(
        "--pyramid",
        choices=("on", "off"),
        help="keep each scale's own keypoints and descriptors (extract.hpatches.pyramid)",
    )
    s.add_argument("--eth-pyramid", choices=("on", "off"), help="the same for the ETH scenes (extract.eth.pyramid)")
    s.add_argument(
        "--rotations",
        type=float,
        nargs="+",
        help="PoSFeat test-time in-plane rotations (degrees) for HPatches and the epipolar precision "
        "(extract.hpatches.rotations)",
    )
    s.add_argument("--eth-rotations", type=float, nargs="+", help="the same for the ETH scenes (extract.eth.rotations)")
    s.add_argument(
        "--pyramid-sift-size",
        type=float,
        help="SIFT keypoint size described at scale 1 in a pyramid (extract.*.pyramid_sift_size)",
    )
    s.add_argument(
        "--input-norm",
        choices=("imagenet", "standardize"),
        help="override the checkpoint's model.input_norm (a test-time experiment)",
    )
    s.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these parts")


def run(args: argparse.Namespace) -> int:
    """Resolve the settings (printed to stderr), measure the chosen parts, write the results JSON and print it."""
    import json
    import sys

    from posfeat.evaluation.real.run import eth_pipeline_config, evaluate_real, extraction_settings
    from posfeat.io import read_yaml_mapping, write_json
    from posfeat.utils import get_logger

    get_logger("posfeat")
    params = read_yaml_mapping(args.params)
    eth_config = eth_pipeline_config(params, args.params)  # checked before any extraction
    settings = extraction_settings(
        params,
        args.params,
        scales=args.scales,
        pyramid=args.pyramid,
        rotations=args.rotations,
        eth_scales=args.eth_scales,
        eth_pyramid=args.eth_pyramid,
        eth_rotations=args.eth_rotations,
        pyramid_sift_size=args.pyramid_sift_size,
    )
    print(json.dumps(settings), file=sys.stderr)
    parts = [p for p in args.only if not (p == "eth" and args.no_eth)]
    work = args.work or work_folder(args.out)
    res = evaluate_real(args.weights, args.data, work, settings, eth_config, parts, args.input_norm)
    write_json(args.out, res)
    print(json.dumps(res, indent=2))
    return 0
