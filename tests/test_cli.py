"""The command line: `python -m posfeat --help` and every subcommand's arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from posfeat.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "posfeat", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for cmd in ("extract", "eval-hpatches", "eval-eth", "eval-aachen", "demo", "megadepth-manifest"):
        assert cmd in out.stdout


def test_subcommand_arguments():
    p = build_parser()
    a = p.parse_args(["extract", "--method", "sift", "--images", "d", "--out", "f.h5", "--max-keypoints", "100"])
    assert (a.method, a.images, a.out, a.max_keypoints, a.module) == ("sift", "d", "f.h5", 100, "posfeat.extraction")
    a = p.parse_args(["eval-hpatches", "--root", "r", "--features", "a=x.h5", "b=y.h5", "--out", "m.json"])
    assert a.features == [("a", "x.h5"), ("b", "y.h5")]
    with pytest.raises(SystemExit):
        p.parse_args(["eval-hpatches", "--root", "r", "--features", "nokey", "--out", "m.json"])
    a = p.parse_args(["eval-aachen", "--root", "r", "--features", "f.h5", "--out", "o"])
    assert a.module == "posfeat.evaluation.aachen"
    a = p.parse_args(["eval-eth", "--root", "s", "--features", "f.h5", "--out", "o.json", "--workdir", "w"])
    assert a.workdir == "w"
