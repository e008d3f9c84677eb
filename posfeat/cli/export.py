"""``posfeat export``: the dense network (score map and descriptor map) as a TorchScript or ONNX file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "export"
HELP = "export the dense network (raw [0, 1] image -> score map, descriptor map) to TorchScript (.pt) or ONNX (.onnx)"
FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript"}
"""Output suffix → format."""


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    s.add_argument("--weights", required=True, help="PoSFeat checkpoint (.pt)")
    s.add_argument("--out", required=True, help="output file: .onnx (ONNX) or .pt (TorchScript)")
    s.add_argument("--height", type=int, default=480, help="image height traced with (a multiple of 16; 4 for daisy)")
    s.add_argument("--width", type=int, default=640, help="image width traced with (a multiple of 16; 4 for daisy)")
    s.add_argument(
        "--fixed-size",
        action="store_true",
        help="ONNX: fix the input to 1 x 3 x --height x --width instead of a dynamic batch, height and width",
    )
    s.add_argument("--device", default="cpu", help="cpu | cuda[:N]: TorchScript runs on the device it was traced on")


def export_format(out: str) -> str:
    """``onnx`` or ``torchscript`` from the output's suffix; another suffix is a :class:`~posfeat.io.DataError`."""
    from posfeat.io import DataError

    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{out}: unknown export format {suffix or '(no suffix)'!r}; expected one of {sorted(FORMATS)}")
    return FORMATS[suffix]


def run(args: argparse.Namespace) -> int:
    """Export, and print what the file holds."""
    from posfeat.export import describe_export, example_image, export_onnx, export_torchscript
    from posfeat.extraction import load_model
    from posfeat.io import DataError
    from posfeat.utils import get_logger

    log = get_logger("posfeat")
    fmt = export_format(args.out)
    model = load_model(args.weights, args.device)
    if fmt == "onnx":
        try:
            export_onnx(model, args.out, args.height, args.width, dynamic=not args.fixed_size)
        except ImportError as e:
            raise DataError(str(e)) from e
    else:
        export_torchscript(model, args.out, example_image(model, args.height, args.width))
    log.info("wrote %s", args.out)
    info = {k: v for k, v in describe_export(model).items() if k != "format"}
    print(json.dumps({"out": str(args.out), "export": fmt, **info}, indent=2))
    return 0
