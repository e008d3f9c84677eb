"""The command-line options the COLMAP benchmarks (``bench_colmap.py``, ``bench_aachen.py``) share."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def colmap_bench_parser(
    description: str, dataset: str, workdir_name: str, max_keypoints: int, small_help: str
) -> argparse.ArgumentParser:
    """A parser with the shared options: ``--root`` (default: render the demo's ``dataset`` set), ``--features``
    (default: SIFT extracted into ``--workdir``), ``--workdir``, ``--small``, ``--max-keypoints``, ``--device``,
    ``--json``. Each benchmark adds its own options to it."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--root", help=f"{dataset} root (default: render the demo's {dataset} set into --workdir)")
    ap.add_argument("--features", help="features .h5 (default: SIFT extracted into --workdir)")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / workdir_name))
    ap.add_argument("--small", action="store_true", help=small_help)
    ap.add_argument("--max-keypoints", type=int, default=max_keypoints, help="SIFT keypoints per image")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="also write the figures here")
    return ap
