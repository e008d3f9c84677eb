"""Export of PoSFeat's dense network to TorchScript and ONNX, for use without this package.

The exported module is :class:`DenseNetwork`: it takes the **raw** image batch and normalises it inside the graph,
so a caller needs no ImageNet statistics and no knowledge of ``model.input_norm``.

* input ``image``: float32 ``B×3×H×W``, RGB in ``[0, 1]`` (a uint8 image divided by 255); H and W multiples of
  :func:`input_multiple` (16 for the ResUNet encoders, 4 for ``daisy``). Pad right/bottom by reflection and cut
  the score map back, as :mod:`posfeat.extraction.network` does.
* output ``score``: float32 ``B×1×H×W``, the detector's score map (≥ 0).
* output ``descriptors``: float32 ``B×D×H/4×W/4``, the raw dense descriptor map ``local_map`` (not L2-normalised;
  PoSFeat samples it bilinearly at keypoints, then normalises: docs/method.md#conventions).

Batch size, height and width are dynamic in both formats. Keypoint detection (NMS, threshold, sub-pixel peaks) and
the test-time scales and rotations are not part of the export: they are :mod:`posfeat.extraction`.

ONNX uses PyTorch's TorchScript-based exporter (``dynamo=False``: it needs only ``onnx``, not ``onnxscript``).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

from posfeat.io import DataError, atomic_path
from posfeat.models import DaisyEncoder, normalize_image

INPUT_NAMES = ("image",)
OUTPUT_NAMES = ("score", "descriptors")
ONNX_OPSET = 17
DESCRIPTOR_STRIDE = 4
"""Image pixels per descriptor cell."""


class DenseNetwork(nn.Module):
    """A PoSFeat model as ``raw [0, 1] RGB image → (score map, descriptor map)``; see the module docstring."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` ``B×3×H×W`` in ``[0, 1]`` → ``(score B×1×H×W, descriptors B×D×H/4×W/4)``."""
        out = self.model(normalize_image(image))
        return out["score"], out["local_map"]


def input_multiple(model: nn.Module) -> int:
    """The multiple H and W of the network's input must be: 4 for the ``daisy`` encoder, 16 for a ResUNet."""
    return 4 if isinstance(getattr(model, "backbone", None), DaisyEncoder) else 16


def describe_export(model: nn.Module) -> dict:
    """What an exported file holds, as its metadata stores it (JSON-serialisable)."""
    config = dict(getattr(model, "config", {}))
    return {
        "format": "posfeat-dense",
        "input": "image: float32 Bx3xHxW, RGB in [0, 1] (normalised inside)",
        "outputs": "score: float32 Bx1xHxW; descriptors: float32 BxDxH/4xW/4, raw (L2-normalise after sampling)",
        "input_multiple": input_multiple(model),
        "descriptor_stride": DESCRIPTOR_STRIDE,
        "desc_dim": int(config.get("desc_dim", 0)) or None,
        "config": config,
    }


def example_image(model: nn.Module, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """A fixed pseudo-random ``batch×3×height×width`` image in ``[0, 1]`` on the model's device, to trace with;
    a size the network cannot take is a :class:`~posfeat.io.DataError`."""
    multiple = input_multiple(model)
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise DataError(f"export size {height}x{width}: height and width must be positive multiples of {multiple}")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, height, width, generator=gen).to(device)


def _dense_eval(model: nn.Module) -> DenseNetwork:
    """``model`` in eval mode (BatchNorm statistics frozen) inside a :class:`DenseNetwork`."""
    return DenseNetwork(model.eval()).eval()


@contextlib.contextmanager
def _quiet_tracer() -> Iterator[None]:
    """Silence what tracing and exporting this model always warns: the tracer about the model's Python shape
    checks (``check_image_batch``; the graph does not need them), PyTorch's deprecation notices of TorchScript and
    of the TorchScript-based ONNX exporter (docs/python-api.md says so), and the ONNX exporter's notes that the
    instance norms use the input's statistics (they do, in eval mode too) and that strided slices are not
    constant-folded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=r"ONNX export mode is set to TrainingMode\.EVAL.*instance_norm")
        warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1 can be constant folded")
        yield


def export_torchscript(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace ``model`` (as :class:`DenseNetwork`) on ``example`` and save it to ``path`` (atomically).

    Args:
        model: a PoSFeat model; put in eval mode.
        path: the ``.pt`` file to write; ``torch.jit.load(path)`` reads it back, no posfeat needed. The file also
            holds ``posfeat.json`` (:func:`describe_export`), read with ``torch.jit.load(path, _extra_files=...)``.
        example: an image batch ``B×3×H×W`` in ``[0, 1]`` on the model's device (H, W multiples of
            :func:`input_multiple`). Other batch sizes and image sizes work too; the device does not change:
            trace on the device the module will run on.

    Returns:
        The traced module.
    """
    dense = _dense_eval(model)
    with _quiet_tracer(), torch.no_grad():
        traced = torch.jit.trace(dense, (example,), check_trace=False)
    extra = {"posfeat.json": json.dumps(describe_export(model))}
    with atomic_path(path, suffix=".pt") as tmp, _quiet_tracer():
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    return traced


def _require_onnx():
    """The ``onnx`` package, or an ``ImportError`` naming the install extra."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError("ONNX export needs the onnx package: pip install 'posfeat-study[export]'") from e
    return onnx


def _dynamic_axes() -> dict[str, dict[int, str]]:
    """Batch, height and width of the input and both outputs, as named dynamic ONNX dimensions."""
    return {
        "image": {0: "batch", 2: "height", 3: "width"},
        "score": {0: "batch", 2: "height", 3: "width"},
        "descriptors": {0: "batch", 2: "height_cells", 3: "width_cells"},
    }


def export_onnx(
    model: nn.Module, path: str | os.PathLike, height: int = 480, width: int = 640, dynamic: bool = True
) -> Path:
    """Export ``model`` (as :class:`DenseNetwork`) to an ONNX file at ``path`` (atomically), opset
    :data:`ONNX_OPSET`.

    Args:
        model: a PoSFeat model (any encoder); put in eval mode.
        path: the ``.onnx`` file to write; its ``metadata_props`` hold ``posfeat`` (:func:`describe_export`).
        height, width: the image size the exporter traces with (multiples of :func:`input_multiple`).
        dynamic: batch, height and width dynamic (default); ``False`` fixes them to ``1×height×width``.

    Returns:
        ``path``. Needs the ``onnx`` package (``pip install 'posfeat-study[export]'``; ``ImportError`` otherwise).
    """
    onnx = _require_onnx()
    example = example_image(model, height, width)
    dense = _dense_eval(model)
    with atomic_path(path, suffix=".onnx") as tmp:
        with _quiet_tracer(), torch.no_grad():
            torch.onnx.export(
                dense,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=_dynamic_axes() if dynamic else None,
                opset_version=ONNX_OPSET,
            )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "posfeat", json.dumps(describe_export(model))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return Path(path)


def load_torchscript_metadata(path: str | os.PathLike) -> dict:
    """The ``posfeat.json`` metadata of a file written by :func:`export_torchscript`."""
    extra = {"posfeat.json": ""}
    with _quiet_tracer():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["posfeat.json"])
