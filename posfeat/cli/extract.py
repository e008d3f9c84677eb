"""``posfeat extract``: local features of a folder's images, or of a benchmark's, into one HDF5 file.

The settings flags are :class:`~posfeat.extraction.ExtractConfig`'s fields (:func:`posfeat.cli.flags.add_config_flags`);
with ``--params`` the study's ``extract.<dataset>`` is the base they override.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from posfeat.cli.flags import add_config_flags, given_settings
from posfeat.datasets.benchmarks import BENCHMARKS
from posfeat.extraction.config import ExtractConfig

NAME = "extract"
HELP = "extract local features of a folder's images, or of a benchmark's, into an HDF5 file"
CLI_METHODS = ("posfeat", "posfeat_sift", "sift", "rootsift")


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags: what to extract, from where, to where, and the settings."""
    s.add_argument(
        "--method",
        choices=CLI_METHODS,
        required=True,
        help="posfeat | posfeat_sift (PoSFeat descriptors on OpenCV SIFT keypoints) | sift | rootsift",
    )
    s.add_argument("--weights", help="PoSFeat checkpoint (.pt), required for posfeat and posfeat_sift")
    s.add_argument("--images", help="image folder, searched recursively; names are relative to it (or --dataset)")
    s.add_argument(
        "--dataset",
        choices=BENCHMARKS,
        help="a benchmark's images, named as the study names them, under --root (or the root --params names)",
    )
    s.add_argument(
        "--root", help="with --dataset: the benchmark's root folder (default: datasets.<dataset> of --params)"
    )
    s.add_argument(
        "--params",
        metavar="PARAMS.yaml",
        help="with --dataset: take the study's extract.<dataset> settings (and, for hpatches, its "
        "eval.hpatches.exclude) from this file; flags given override them",
    )
    s.add_argument("--out", required=True, help="output features .h5 (hloc layout)")
    s.add_argument(
        "--posfeat-sift-out",
        metavar="H5",
        help="with --method posfeat: also write posfeat_sift features to this .h5 from the same network "
        "pass (what --method posfeat_sift writes, without a second run)",
    )
    add_config_flags(s, ExtractConfig, "extract.<dataset>")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def _study_settings(args) -> tuple[dict, tuple[str, ...], Path | None]:
    """``(extract.<dataset> settings, hpatches exclusions, dataset root)`` of ``--params`` (empty without it); a
    relative ``datasets.<dataset>`` is taken from the parameter file's folder."""
    from posfeat.io import read_yaml_mapping
    from posfeat.settings import dataset_root, param

    if not args.params:
        return {}, (), None if args.root is None else Path(args.root)
    params, source = read_yaml_mapping(args.params), str(args.params)
    settings = dict(param(params, f"extract.{args.dataset}", dict, source=source))
    exclude = ()
    if args.dataset == "hpatches":
        exclude = tuple(param(params, "eval.hpatches.exclude", list, [], source=source) or ())
    if args.root is not None:
        return settings, exclude, Path(args.root)
    return settings, exclude, dataset_root(params, args.dataset, Path(args.params).parent, source=source)


def extract_request(args) -> tuple[ExtractConfig, Path, list[str]]:
    """``(settings, image root, image names)``: the study's ``extract.<dataset>`` of ``--params`` (when given),
    overridden by every settings flag given; the images of ``--images``, or of the benchmark ``--dataset``
    under ``--root`` (default: ``datasets.<dataset>`` of ``--params``, relative to that file's folder)."""
    from posfeat.datasets.benchmarks import benchmark_images
    from posfeat.datasets.images import list_images

    if (args.images is None) == (args.dataset is None):
        raise SystemExit("extract: give --images DIR, or --dataset NAME (with --root DIR or --params PARAMS.yaml)")
    if args.params and not args.dataset:
        raise SystemExit("extract: --params needs --dataset (which extract.<dataset> settings to take)")
    settings, exclude, root = _study_settings(args)
    # the settings flags are absent from ``args`` unless given (argparse.SUPPRESS)
    settings.update(given_settings(args, ExtractConfig))
    settings["sift_keypoints"] = args.method == "posfeat_sift"
    what = f"{args.params}: extract.{args.dataset}" if args.params else "extract flags"
    cfg = ExtractConfig.from_dict(settings, what=what)
    if args.images is not None:
        return cfg, Path(args.images), list_images(args.images)
    if root is None:
        raise SystemExit("extract: --dataset needs --root DIR (or --params PARAMS.yaml naming datasets.<dataset>)")
    image_root, names = benchmark_images(args.dataset, root, exclude)
    return cfg, image_root, names


def run(args: argparse.Namespace) -> int:
    """Extract and print the summary."""
    from posfeat.extraction import extract_dataset, load_model
    from posfeat.utils import get_logger

    get_logger("posfeat")
    if args.posfeat_sift_out and args.method != "posfeat":
        raise SystemExit("--posfeat-sift-out only applies to --method posfeat (it writes posfeat_sift beside it)")
    cfg, image_root, names = extract_request(args)
    model = None
    if args.method in ("posfeat", "posfeat_sift"):
        if not args.weights:
            raise SystemExit(f"extract --method {args.method} needs --weights MODEL.pt")
        model = load_model(args.weights, args.device)
    method = "posfeat" if args.method == "posfeat_sift" else args.method
    summary = extract_dataset(
        method, image_root, names, args.out, model=model, config=cfg, device=args.device, sift_out=args.posfeat_sift_out
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0
