"""HPatches sequences (docs/paper-scale.md#dataset-layouts): ``<root>/<i_|v_name>/{1..6}.<ext>`` and ``H_1_k``
(k = 2..6).

``H_1_k`` is a 3×3 text matrix mapping pixels of image 1 to image k. ``i_*`` sequences change the
illumination (identity homographies), ``v_*`` sequences change the viewpoint. The D2-Net protocol
drops eight sequences (:data:`D2NET_EXCLUDE`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posfeat.datasets.images import IMAGE_EXTENSIONS
from posfeat.datasets.records import check_field_count, iter_records, parse_float
from posfeat.io import DataError

D2NET_EXCLUDE = (
    "i_contruction",
    "i_crownnight",
    "i_dc",
    "i_pencils",
    "i_whitebuilding",
    "v_artisans",
    "v_astronautis",
    "v_talent",
)

MIN_SINGULAR_RATIO = 1e-10
"""A homography whose smallest/largest singular value ratio is below this is treated as singular."""


def read_homography(path: str | os.PathLike) -> np.ndarray:
    """Read a 3×3 homography from text (3 rows of 3 numbers; ``#`` and blank lines ignored).

    Returns a float64 ``(3, 3)`` array. Raises :class:`DataError` on a missing file, a wrong number
    of rows or columns, a non-finite entry or a (numerically) singular matrix.
    """
    path = Path(path)
    rows: list[list[float]] = []
    last_line = 0
    for lineno, fields in iter_records(path, "a 3x3 homography (3 rows of 3 numbers)"):
        where = f"{path}:{lineno}"
        if len(rows) == 3:
            raise DataError(f"{where}: expected 3 rows of 3 numbers, found a 4th row")
        check_field_count(fields, 3, where, "one row of a 3x3 homography")
        rows.append([parse_float(x, where, f"H[{len(rows)},{j}]") for j, x in enumerate(fields)])
        last_line = lineno
    if len(rows) != 3:
        raise DataError(f"{path}:{last_line}: expected 3 rows of 3 numbers, found {len(rows)} row(s)")
    H = np.array(rows, dtype=np.float64)
    s = np.linalg.svd(H, compute_uv=False)
    if not s[0] > 0 or s[-1] / s[0] < MIN_SINGULAR_RATIO:
        raise DataError(
            f"{path}:{last_line}: expected an invertible homography, found a singular matrix "
            f"(det={np.linalg.det(H):.3g}, singular values {s[0]:.3g}..{s[-1]:.3g})"
        )
    return H


@dataclass
class HSequence:
    """One HPatches sequence: image names relative to the dataset root (image 1 first) and ``H_1_k``."""

    name: str
    kind: str  # 'i' (illumination) or 'v' (viewpoint)
    path: Path
    images: list[str] = field(default_factory=list)  # e.g. "v_boat/1.ppm" ... "v_boat/6.ppm"
    homographies: dict[int, np.ndarray] = field(default_factory=dict)  # k=2..6 -> H_1_k

    def pairs(self) -> list[tuple[str, str, np.ndarray]]:
        """``(image 1, image k, H_1_k)`` for k = 2..6."""
        return [(self.images[0], self.images[k - 1], self.homographies[k]) for k in range(2, len(self.images) + 1)]


def list_sequences(root: str | os.PathLike, exclude=D2NET_EXCLUDE) -> list[str]:
    """Sorted sequence folder names (``i_*`` / ``v_*``) under ``root``, without those in ``exclude``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: HPatches root not found (expected <root>/<i_|v_name>/1.ppm ...)")
    excluded = set(exclude or ())
    names = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and (p.name.startswith("i_") or p.name.startswith("v_")) and p.name not in excluded
    )
    return names


def _find_image(seq_dir: Path, index: int) -> Path:
    cands = sorted(p for p in seq_dir.glob(f"{index}.*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not cands:
        raise DataError(
            f"{seq_dir}: expected image {index}.<ext> (ext one of {', '.join(IMAGE_EXTENSIONS)}), found none"
        )
    if len(cands) > 1:
        raise DataError(f"{seq_dir}: expected one image {index}.<ext>, found {len(cands)}: {[p.name for p in cands]}")
    return cands[0]


def load_sequence(root: str | os.PathLike, name: str, num_images: int = 6) -> HSequence:
    """Load sequence ``name``: its images ``1.*`` .. ``6.*`` and homographies ``H_1_2`` .. ``H_1_6``."""
    root = Path(root)
    seq_dir = root / name
    if not seq_dir.is_dir():
        raise DataError(f"{seq_dir}: HPatches sequence folder not found")
    if not (name.startswith("i_") or name.startswith("v_")):
        raise DataError(f"{seq_dir}: expected a sequence name starting with i_ or v_, found {name!r}")
    images = [_find_image(seq_dir, k).relative_to(root).as_posix() for k in range(1, num_images + 1)]
    homs = {k: read_homography(seq_dir / f"H_1_{k}") for k in range(2, num_images + 1)}
    return HSequence(name=name, kind=name[0], path=seq_dir, images=images, homographies=homs)
