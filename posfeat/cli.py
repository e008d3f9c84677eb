"""``python -m posfeat …``: features and evaluations outside the DVC study.

Arguments are declared here; each subcommand calls ``run_cli(args)`` of the library module that does
the work (imported lazily, so ``--help`` stays fast). The DVC stages call the same library functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from posfeat.entry import DEBUG_ENV, run_entry

CLI_METHODS = ("posfeat", "posfeat_sift", "sift", "rootsift")
BENCHMARKS = ("hpatches", "aachen", "eth")  # posfeat.data.benchmarks.BENCHMARKS (tested equal)


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=FEATURES.h5, got {text!r}")
    name, path = text.split("=", 1)
    return name, path


EXTRACT_FLAGS = {
    "max_keypoints": (int, None, 8192, "keypoints per image (at most)"),
    "nms_radius": (int, None, 1, "non-maximum suppression radius in pixels (PoSFeat)"),
    "threshold": (float, None, 0.9, "score threshold (PoSFeat)"),
    "threshold_mode": (
        str,
        ["abs", "max", "mean", "none"],
        "abs",
        "how --threshold applies to the score map (PoSFeat)",
    ),
    "scales": (float, "+", (1.0,), "image scales the network runs at (PoSFeat)"),
    "pyramid": (
        bool,
        None,
        False,
        "keep every scale's own keypoints and descriptors instead of fusing the scales (PoSFeat)",
    ),
    "rotations": (
        float,
        "+",
        (0.0,),
        "in-plane rotations (degrees) of the image the network also runs on, pooled (PoSFeat)",
    ),
    "subpixel": (
        str,
        ["centroid", "quadratic"],
        "centroid",
        "sub-pixel refinement of a score peak: the official 3x3 centroid or a parabola per axis (PoSFeat)",
    ),
    "pyramid_sift_size": (
        float,
        None,
        4.0,
        "posfeat_sift in a pyramid: the OpenCV keypoint size (px) described at scale 1",
    ),
    "descriptor_dtype": (
        str,
        ["float16", "float32"],
        "float16",
        "how descriptors are stored (read back as float32 either way)",
    ),
    "amp": (bool, None, False, "mixed precision (bfloat16 on a CPU that has it natively)"),
}
"""The ``extract`` flags that set an :class:`~posfeat.extraction.ExtractConfig` field: ``(type, choices or
nargs, the field's default, help)``. A flag given overrides ``--params``; one not given leaves the value of
``--params`` or else the field's default (a test checks these defaults against the dataclass; the table
keeps ``--help`` free of torch)."""


def _add_extract_settings(s: argparse.ArgumentParser) -> None:
    """One flag per :data:`EXTRACT_FLAGS` field; not given, it is absent from the parsed arguments."""
    for name, (kind, extra, default, text) in EXTRACT_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{text} (default: {shown}; the study's extract.<dataset>.{name})"
        if kind is bool:
            s.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        elif isinstance(extra, list):
            s.add_argument(flag, choices=extra, default=argparse.SUPPRESS, help=text)
        else:
            s.add_argument(flag, type=kind, nargs=extra, default=argparse.SUPPRESS, help=text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="posfeat", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a bad-input error (also: {DEBUG_ENV}=1); accepted anywhere",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="render the demo world (MegaDepth, HPatches, Aachen and ETH layouts)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="random seed of the demo world")
    s.set_defaults(module="posfeat.data.demo")

    s = sub.add_parser("megadepth-manifest", help="fingerprint a MegaDepth root's img_cam.txt/pairs.txt for DVC")
    s.add_argument("--root", required=True, help="MegaDepth root (<root>/<scene>/dense*/aligned)")
    s.add_argument(
        "--out", required=True, help="manifest JSON (the file params.yaml's datasets.megadepth_metadata names)"
    )
    s.set_defaults(module="posfeat.data.manifest")

    s = sub.add_parser(
        "photos",
        help="turn your own photo collections (one folder per place, EXIF optional) into a "
        "PoSFeat training set in the MegaDepth layout",
    )
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
    s.set_defaults(module="posfeat.data.photos")

    s = sub.add_parser(
        "extract", help="extract local features of a folder's images, or of a benchmark's, into an HDF5 file"
    )
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
    _add_extract_settings(s)
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.set_defaults(module="posfeat.extraction")

    s = sub.add_parser("eval-hpatches", help="HPatches MMA (D2-Net protocol)")
    s.add_argument("--root", required=True, help="hpatches-sequences-release folder")
    s.add_argument(
        "--features", required=True, nargs="+", type=_kv, metavar="NAME=FEATURES.h5", help="one feature file per method"
    )
    s.add_argument("--out", required=True, help="metrics JSON")
    s.add_argument("--plot", help="PNG figure of the MMA curves")
    s.add_argument("--curves-dir", help="write <method>.csv curves here")
    s.add_argument("--no-exclude", action="store_true", help="keep the 8 sequences D2-Net drops")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.set_defaults(module="posfeat.evaluation.hpatches")

    s = sub.add_parser("eval-eth", help="ETH local feature benchmark: reconstruct one scene with pycolmap")
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
    s.set_defaults(module="posfeat.evaluation.eth")

    s = sub.add_parser("eval-aachen", help="Aachen Day-Night localization with pycolmap")
    s.add_argument("--root", required=True, help="Aachen dataset root")
    s.add_argument("--features", required=True, help="features .h5 (names relative to images/images_upright)")
    s.add_argument("--out", required=True, help="output folder: metrics JSON and benchmark submission file")
    s.add_argument(
        "--method-name", default=None, help="name of the method in the outputs; None: the method the feature file holds"
    )
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.set_defaults(module="posfeat.evaluation.aachen")

    s = sub.add_parser("convert-official", help="convert the official backbone.pth + localheader.pth to one model .pt")
    s.add_argument("backbone", help="official backbone state dict (backbone.pth)")
    s.add_argument("localheader", help="official detector state dict (localheader.pth)")
    s.add_argument("--out", required=True, help="output model .pt (the format of models/posfeat.pt)")
    s.add_argument("--keep-global-map", action="store_true", help="keep the unused CAPS global head (conv_coarse)")
    s.set_defaults(module="posfeat.convert")
    for s in sub.choices.values():  # every subcommand's --help shows the defaults
        s.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    return p


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args.module)
    rc = module.run_cli(args)
    return int(rc or 0)


def main(argv: list[str] | None = None) -> int:
    """The ``posfeat`` command (and ``python -m posfeat``): bad input ends in one message, exit status 2."""
    return run_entry(_run, argv, prog="posfeat")


if __name__ == "__main__":
    sys.exit(main())
