"""Where the files of an Aachen Day-Night root are, in the v1.1 and v1.0 releases (:class:`AachenLayout`; the tree:
:mod:`posfeat.datasets.aachen`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from posfeat.io import DataError

MODEL_FILES = ("cameras", "images", "points3D")


@dataclass
class AachenLayout:
    """Resolved paths of an Aachen Day-Night root; :meth:`detect` picks the version."""

    root: Path
    version: str  # "1.1" | "1.0"

    @classmethod
    def detect(cls, root: str | os.PathLike) -> "AachenLayout":
        """v1.1 if ``3D-models/aachen_v_1_1/`` exists, v1.0 if the CVPR 2018 NVM model exists, else DataError."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: Aachen root not found")
        if (root / "3D-models" / "aachen_v_1_1").is_dir():
            layout = cls(root, "1.1")
        elif any(
            (d / "aachen_cvpr2018_db.nvm").is_file() for d in (root / "3D-models", root / "3D-models" / "aachen_v_1")
        ):
            layout = cls(root, "1.0")
        else:
            raise DataError(
                f"{root}: expected an Aachen Day-Night root with 3D-models/aachen_v_1_1/ (v1.1) or "
                f"3D-models/aachen_cvpr2018_db.nvm (v1.0), found neither"
            )
        if not layout.image_dir.is_dir():
            raise DataError(f"{layout.image_dir}: image folder not found (expected images/images_upright)")
        return layout

    @property
    def image_dir(self) -> Path:
        return self.root / "images" / "images_upright"

    @property
    def model_dir(self) -> Path:
        """v1.1: the COLMAP model folder; v1.0: the folder holding the NVM and the intrinsics."""
        if self.version == "1.1":
            return self.root / "3D-models" / "aachen_v_1_1"
        for d in (self.root / "3D-models", self.root / "3D-models" / "aachen_v_1"):
            if (d / "aachen_cvpr2018_db.nvm").is_file():
                return d
        return self.root / "3D-models"

    @property
    def nvm(self) -> Path:
        return self.model_dir / ("aachen_v_1_1.nvm" if self.version == "1.1" else "aachen_cvpr2018_db.nvm")

    @property
    def database_intrinsics(self) -> Path:
        name = "database_intrinsics_v1_1.txt" if self.version == "1.1" else "database_intrinsics.txt"
        return self.model_dir / name

    @property
    def query_lists(self) -> dict[str, Path]:
        """``{condition: query list}`` for the lists present (v1.0: night, and day if present)."""
        q = self.root / "queries"
        if self.version == "1.1":
            cands = {
                "day": [q / "day_time_queries_with_intrinsics.txt"],
                "night": [
                    q / "night_time_queries_with_intrinsics_v1_1.txt",
                    q / "night_time_queries_with_intrinsics.txt",
                ],
            }
        else:
            cands = {
                "day": [q / "day_time_queries_with_intrinsics.txt"],
                "night": [q / "night_time_queries_with_intrinsics.txt"],
            }
        out = {}
        for cond, paths in cands.items():
            for p in paths:
                if p.is_file():
                    out[cond] = p
                    break
        return out

    @property
    def pairs(self) -> Path:
        name = "image_pairs_to_match_v1_1.txt" if self.version == "1.1" else "image_pairs_to_match.txt"
        return self.root / "others" / name

    @property
    def ground_truth(self) -> Path:
        """``queries/ground_truth_queries.txt`` (may not exist: the real release withholds query poses)."""
        return self.root / "queries" / "ground_truth_queries.txt"

    def has_ground_truth(self) -> bool:
        return self.ground_truth.is_file()
