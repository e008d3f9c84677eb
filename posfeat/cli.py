"""``python -m posfeat …``: features and evaluations outside the DVC study.

Arguments are declared here; each subcommand calls ``run_cli(args)`` of the library module that does
the work (imported lazily, so ``--help`` stays fast). The DVC stages call the same library functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from posfeat.entry import DEBUG_ENV, run_entry


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=FEATURES.h5, got {text!r}")
    name, path = text.split("=", 1)
    return name, path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posfeat", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help=f"show the traceback of a bad-input error (also: {DEBUG_ENV}=1); accepted anywhere")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="render the demo world (MegaDepth, HPatches, Aachen and ETH layouts)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="random seed of the demo world")
    s.set_defaults(module="posfeat.data.demo")

    s = sub.add_parser("megadepth-manifest", help="fingerprint a MegaDepth root's img_cam.txt/pairs.txt for DVC")
    s.add_argument("--root", required=True, help="MegaDepth root (<root>/<scene>/dense*/aligned)")
    s.add_argument("--out", required=True, help="manifest JSON (the file params.yaml's datasets.megadepth_metadata names)")
    s.set_defaults(module="posfeat.data.manifest")

    s = sub.add_parser("extract", help="extract local features of every image under a folder into an HDF5 file")
    s.add_argument("--method", choices=["posfeat", "sift", "rootsift"], required=True, help="local features to extract")
    s.add_argument("--weights", help="PoSFeat checkpoint (.pt), required for --method posfeat")
    s.add_argument("--images", required=True, help="image folder, searched recursively; names are relative to it")
    s.add_argument("--out", required=True, help="output features .h5 (hloc layout)")
    s.add_argument("--max-keypoints", type=int, default=8192, help="keypoints per image (at most)")
    s.add_argument("--nms-radius", type=int, default=1, help="non-maximum suppression radius in pixels (PoSFeat)")
    s.add_argument("--threshold", type=float, default=0.9, help="score threshold (PoSFeat)")
    s.add_argument("--threshold-mode", choices=["abs", "max", "mean", "none"], default="abs",
                   help="how --threshold applies to the score map (PoSFeat)")
    s.add_argument("--sift-keypoints", action="store_true", help="PoSFeat descriptors on OpenCV SIFT keypoints")
    s.add_argument("--sift-keypoints-out", metavar="H5",
                   help="with --method posfeat: also write PoSFeat descriptors on OpenCV SIFT keypoints to this .h5, "
                        "from the same network pass (what --sift-keypoints gives, without a second run)")
    s.add_argument("--scales", type=float, nargs="+", default=[1.0],
                   help="image scales the network runs at (PoSFeat; the study's extract.<dataset>.scales)")
    s.add_argument("--pyramid", action="store_true",
                   help="keep every scale's own keypoints and descriptors instead of fusing the scales (PoSFeat)")
    s.add_argument("--rotations", type=float, nargs="+", default=[0.0],
                   help="in-plane rotations (degrees) of the image the network also runs on, pooled (PoSFeat; the "
                        "study's extract.<dataset>.rotations)")
    s.add_argument("--subpixel", choices=["centroid", "quadratic"], default="centroid",
                   help="sub-pixel refinement of a score peak: the official 3x3 centroid or a parabola per axis "
                        "(PoSFeat; the study's extract.<dataset>.subpixel)")
    s.add_argument("--pyramid-sift-size", type=float, default=4.0,
                   help="with --pyramid and SIFT keypoints: the OpenCV keypoint size (px) described at scale 1 "
                        "(the study's extract.<dataset>.pyramid_sift_size)")
    s.add_argument("--descriptor-dtype", choices=["float16", "float32"], default="float16",
                   help="how descriptors are stored (read back as float32 either way)")
    s.add_argument("--amp", action="store_true",
                   help="mixed precision (bfloat16 on a CPU that has it natively; the study's extract.<dataset>.amp)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.set_defaults(module="posfeat.extraction")

    s = sub.add_parser("eval-hpatches", help="HPatches MMA (D2-Net protocol)")
    s.add_argument("--root", required=True, help="hpatches-sequences-release folder")
    s.add_argument("--features", required=True, nargs="+", type=_kv, metavar="NAME=FEATURES.h5",
                   help="one feature file per method")
    s.add_argument("--out", required=True, help="metrics JSON")
    s.add_argument("--plot", help="PNG figure of the MMA curves")
    s.add_argument("--curves-dir", help="write <method>.csv curves here")
    s.add_argument("--no-exclude", action="store_true", help="keep the 8 sequences D2-Net drops")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.set_defaults(module="posfeat.evaluation.hpatches")

    s = sub.add_parser("eval-eth", help="ETH local feature benchmark: reconstruct one scene with pycolmap")
    s.add_argument("--scene", required=True, help="scene folder with images/")
    s.add_argument("--features", required=True, help="features .h5 (extracted from the ETH root, the scene or its images/ folder)")
    s.add_argument("--out", required=True, help="statistics JSON")
    s.add_argument("--workdir", help="where the database and models go; None: a folder beside --out")
    s.add_argument("--ratio", type=float, default=None,
                   help="Lowe ratio on both sides of the mutual NN (the official PoSFeat script: 0.75); None: off")
    s.add_argument("--max-exhaustive-images", type=int, default=1600,
                   help="exhaustive pairs up to this many images, else retrieval pairs (k nearest by bag of words)")
    s.add_argument("--retrieval-neighbors", type=int, default=50, help="retrieval pairs: neighbours per image")
    s.add_argument("--pairs", help="pair list 'nameA nameB' (names relative to images/); None: the scene's own "
                                   "pairs.txt / image_pairs.txt / match_list.txt if any")
    s.add_argument("--seed", type=int, default=0, help="every random seed: RANSAC, retrieval, mapper")
    s.add_argument("--focal-init", choices=["two_view", "guess"], default="two_view",
                   help="initial focal length of photos without EXIF: self-calibrated from the verified pairs "
                        "(two_view) or COLMAP's 1.2·max(w, h) (guess)")
    s.add_argument("--mapping-attempts", type=int, default=3,
                   help="mapper runs with seeds seed, seed+1, ... while the largest model leaves images out")
    s.add_argument("--num-threads", type=int, default=-1, help="COLMAP threads (-1: all cores)")
    s.add_argument("--no-database", action="store_true",
                   help="ignore the scene's database.db (cameras from EXIF or guessed instead)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.set_defaults(module="posfeat.evaluation.eth")

    s = sub.add_parser("eval-aachen", help="Aachen Day-Night localization with pycolmap")
    s.add_argument("--root", required=True, help="Aachen dataset root")
    s.add_argument("--features", required=True, help="features .h5 (names relative to images/images_upright)")
    s.add_argument("--out", required=True, help="output folder: metrics JSON and benchmark submission file")
    s.add_argument("--method-name", default=None,
                   help="name of the method in the outputs; None: the method the feature file holds")
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
