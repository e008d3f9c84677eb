"""The images each benchmark's evaluation needs, named as its feature files name them.

* ``hpatches``: ``<seq>/<k>.ppm`` relative to the HPatches root, all six images of every kept sequence;
* ``aachen``: relative to ``<root>/images/images_upright`` (``db/1.jpg``, ``query/day/nexus5x/x.jpg``, …);
* ``eth``: ``<Scene>/images/<file>`` relative to the ETH root, every image of every scene.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.datasets.hpatches import list_sequences, load_sequence
from posfeat.datasets.images import list_images
from posfeat.io import DataError

BENCHMARKS = ("hpatches", "aachen", "eth")


def benchmark_images(dataset: str, root: str | Path, exclude=()) -> tuple[Path, list[str]]:
    """``(image root, names relative to it)`` of every image the benchmark ``dataset`` needs under ``root``
    (``exclude``: HPatches sequences left out)."""
    root = Path(root)
    if dataset == "hpatches":
        names = [im for s in list_sequences(root, exclude) for im in load_sequence(root, s).images]
        return root, names
    if dataset == "aachen":
        image_root = root / "images" / "images_upright"
        return image_root, list_images(image_root)
    if dataset == "eth":
        if not root.is_dir():
            raise DataError(f"{root}: ETH root not found (expected <root>/<Scene>/images/*)")
        scenes = sorted(p.name for p in root.iterdir() if (p / "images").is_dir())
        if not scenes:
            raise DataError(f"{root}: no scene with an images/ folder (expected <root>/<Scene>/images/*)")
        names = [f"{s}/images/{n}" for s in scenes for n in list_images(root / s / "images")]
        return root, names
    raise ValueError(f"dataset must be one of {BENCHMARKS}, got {dataset!r}")
