"""The README's command-line block, run line by line on the demo world (the commands chain as documented)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import h5py
import pytest

from posfeat.cli import build_parser
from posfeat.cli import main as cli_main
from posfeat.io import read_json

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}


def readme_cli_lines() -> list[str]:
    """The ``python -m posfeat …`` lines of the README's "Command line (outside the study)" block."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Command line (outside the study)") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [ln.split("#")[0].strip() for ln in block.splitlines() if ln.strip().startswith("python -m posfeat")]


def test_readme_block_is_complete():
    lines = readme_cli_lines()
    cmds = [ln.split()[3] for ln in lines]
    assert {"extract", "eval-hpatches", "eval-eth", "eval-aachen"} <= set(cmds)
    # both natural folder choices for an ETH scene are documented
    assert any("--images ETH/Fountain/images" in ln for ln in lines)
    assert any(re.search(r"--images ETH/Fountain(\s|$)", ln) for ln in lines)


@pytest.mark.slow
def test_readme_commands_run_in_sequence(demo_root, tmp_path, monkeypatch):
    from posfeat.datasets.eth import list_scenes
    from posfeat.models import build_model
    from posfeat.models.posfeat import save_checkpoint

    weights = tmp_path / "posfeat.pt"
    save_checkpoint(weights, build_model(TINY_MODEL))
    scene = list_scenes(demo_root / "eth")[0]
    subs = {
        "models/posfeat.pt": str(weights),
        "params.yaml": str(ROOT / "params.yaml"),
        "HPATCHES": str(demo_root / "hpatches"),
        "ETH/Fountain": str(demo_root / "eth" / scene),
        "AACHEN": str(demo_root / "aachen"),
    }
    monkeypatch.chdir(tmp_path)
    for line in readme_cli_lines():
        for k, v in subs.items():
            line = line.replace(k, v)
        argv = shlex.split(line)[3:]  # drop "python -m posfeat"
        if argv[0] == "extract":
            argv += ["--device", "cpu", "--max-keypoints", "1024"]
        assert cli_main(argv) == 0, line
    mma = read_json(tmp_path / "mma.json")
    assert set(mma) == {"posfeat", "posfeat_sift", "sift"} and mma["sift"]["overall"]["mma@3"] > 0.3
    for out in ("fountain.json", "fountain2.json"):
        stats = read_json(tmp_path / out)[scene]
        # the small demo scene (6 views over a wide arc, 1024 SIFT keypoints) reconstructs 3-4 of them
        assert stats["num_images"] == 6 and stats["num_reg_images"] >= 3, stats["message"]
    assert read_json(tmp_path / "fountain2.json")[scene]["protocol"]["matcher"] == "mutual NN + ratio 0.75"
    assert any((tmp_path / "results_aachen").glob("*.json"))
    assert (tmp_path / "results_aachen" / "sift.txt").is_file()  # named after the method the file holds
    with h5py.File(tmp_path / "fountain_sift.h5") as f:  # named relative to images/, hloc's SIFT datasets
        g = f[sorted(f.keys())[0]]
        assert {"keypoints", "scores", "descriptors", "image_size", "scales", "oris"} <= set(g)
        assert g["scales"].shape == g["oris"].shape == (len(g["keypoints"]),) and (g["scales"][()] > 0).all()


def test_help_shows_every_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        text = p.format_help()
        for action in p._actions:
            if action.default == argparse.SUPPRESS and action.dest != "help":  # a setting: its default in the help
                assert "(default: " in action.help, (name, action.dest)
            elif (
                action.option_strings
                and action.default is not None
                and action.dest != "help"
                and action.default is not False
            ):
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


@pytest.mark.parametrize("folder", ["root"])  # SCENE/images and SCENE: the README block
def test_eth_accepts_features_from_any_folder(demo_root, tmp_path, folder):
    """extract --images SCENE/images, SCENE or the ETH root: eval-eth finds every image's features."""
    from posfeat.datasets.eth import list_scenes

    scene = list_scenes(demo_root / "eth")[0]
    images = {
        "images": demo_root / "eth" / scene / "images",
        "scene": demo_root / "eth" / scene,
        "root": demo_root / "eth",
    }[folder]
    h5 = tmp_path / "f.h5"
    assert (
        cli_main(["extract", "--method", "sift", "--images", str(images), "--out", str(h5), "--max-keypoints", "512"])
        == 0
    )
    out = tmp_path / "s.json"
    assert (
        cli_main(
            [
                "eval-eth",
                "--root",
                str(demo_root / "eth" / scene),
                "--features",
                str(h5),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--mapping-attempts",
                "1",
            ]
        )
        == 0
    )
    assert read_json(out)[scene]["num_pairs"] > 0
