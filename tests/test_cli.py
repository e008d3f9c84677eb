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
    assert (a.method, a.images, a.out, a.max_keypoints, a.module) == ("sift", "d", "f.h5", 100, "posfeat.cli.extract")
    a = p.parse_args(["eval-hpatches", "--root", "r", "--features", "a=x.h5", "b=y.h5", "--out", "m.json"])
    assert a.features == [("a", "x.h5"), ("b", "y.h5")]
    with pytest.raises(SystemExit):
        p.parse_args(["eval-hpatches", "--root", "r", "--features", "nokey", "--out", "m.json"])
    a = p.parse_args(["eval-aachen", "--root", "r", "--features", "f.h5", "--out", "o"])
    assert a.module == "posfeat.cli.eval_aachen"
    a = p.parse_args(["eval-eth", "--root", "s", "--features", "f.h5", "--out", "o.json", "--workdir", "w"])
    assert a.workdir == "w"


def test_help_needs_no_torch():
    """``posfeat --help`` builds every subcommand's flags (the extraction's from ExtractConfig) without torch."""
    code = "import sys; from posfeat.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_extract_flags_are_the_config_fields():
    """Each settings flag of ``extract`` is a field of ExtractConfig: its type, choices and default come from
    the field; a flag not given stays out of the parsed arguments."""
    from dataclasses import fields

    from posfeat.extraction import ExtractConfig

    p = build_parser()
    extract = p._subparsers._group_actions[0].choices["extract"]
    settings = {a.dest: a for a in extract._actions if a.default == "==SUPPRESS==" and a.dest != "help"}
    cli_fields = {f.name: f for f in fields(ExtractConfig) if f.metadata.get("cli", True)}
    assert set(settings) == set(cli_fields)
    for name, f in cli_fields.items():
        shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else str(f.default)
        assert f"default: {shown};" in settings[name].help and f"extract.<dataset>.{name}" in settings[name].help
    a = p.parse_args(["extract", "--method", "posfeat", "--images", "d", "--out", "f.h5", "--scales", "1", "0.5"])
    assert a.scales == [1.0, 0.5] and not hasattr(a, "threshold") and not hasattr(a, "amp")
    a = p.parse_args(
        ["extract", "--method", "posfeat", "--images", "d", "--out", "f", "--no-amp", "--subpixel", "quadratic"]
    )
    assert a.amp is False and a.subpixel == "quadratic"
    with pytest.raises(SystemExit):
        p.parse_args(["extract", "--method", "posfeat", "--images", "d", "--out", "f", "--threshold-mode", "median"])


def test_eval_eth_and_photos_flags_are_their_config_fields():
    """eval-eth's and photos' settings flags are ETHConfig's and PhotosConfig's fields (the old flag names kept:
    --pairs, --no-database); only the flags given reach the config, the rest keep the dataclass defaults."""
    from posfeat.cli.flags import given_settings
    from posfeat.evaluation.eth.config import ETHConfig
    from posfeat.photos.config import PhotosConfig

    p = build_parser()
    base = ["eval-eth", "--root", "s", "--features", "f.h5", "--out", "o.json"]
    a = p.parse_args(base + ["--no-database", "--pairs", "p.txt", "--ratio", "0.75", "--focal-init", "guess"])
    given = given_settings(a, ETHConfig)
    assert given == {"ratio": 0.75, "pairs_file": "p.txt", "use_scene_database": False, "focal_init": "guess"}
    cfg = ETHConfig.from_dict(given)
    assert cfg.num_threads == ETHConfig().num_threads and cfg.max_exhaustive_images == 1600
    assert given_settings(p.parse_args(base), ETHConfig) == {}
    with pytest.raises(SystemExit):
        p.parse_args(base + ["--focal-init", "exif"])
    a = p.parse_args(["photos", "--images", "d", "--out", "o", "--max-image-size", "0", "--num-threads", "-1"])
    assert given_settings(a, PhotosConfig) == {"max_image_size": 0, "num_threads": -1}
