"""End to end: the real `dvc repro` through every stage on a tiny demo, then an experiment.

Copies the repository (tracked and untracked, not ignored, files) into a temporary git repository and
runs DVC as a user would, on the tiny scale (``dvc exp run -S scale=tiny``: Hydra composes conf/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> str:
    env = dict(
        os.environ,
        PYTHONPATH=str(cwd),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    skip_prefixes = ("data/demo", "data/prepared", "models/", "features/", "results/", "dvclive/", "metrics/", "plots/")
    for rel in files:
        if not rel or rel.startswith(skip_prefixes) or rel == "dvc.lock":
            continue
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    # DVC's own config (.dvc/config, .dvcignore) without cache or tmp
    (dst / ".dvc").mkdir(exist_ok=True)
    for name in ("config", ".gitignore"):
        if (ROOT / ".dvc" / name).exists():
            shutil.copy2(ROOT / ".dvc" / name, dst / ".dvc" / name)


def _stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_dvc_repro_then_experiment(tmp_path):
    repo = tmp_path / "study"
    repo.mkdir()
    _copy_repo(repo)
    py = sys.executable
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "study"], repo)

    out = _run([py, "-m", "dvc", "exp", "run", "-S", "scale=tiny"], repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["train_desc"]["steps_per_epoch"] == 4
    ran = _stages_run(out)
    for stage in (
        "demo_data",
        "prepare_megadepth",
        "train_desc",
        "train_kp",
        "eval_hpatches",
        "eval_aachen",
        "eval_eth",
    ):
        assert stage in ran, f"{stage} did not run:\n{out[-3000:]}"
    assert {s for s in ran if s.startswith("extract")} == {
        f"extract_{m}@{d}" for d in ("hpatches", "aachen", "eth") for m in ("posfeat", "sift")
    }
    for path in (
        "models/desc.pt",
        "models/posfeat.pt",
        "features/posfeat/hpatches.h5",
        "features/sift/eth.h5",
        "features/posfeat_sift/aachen.h5",
        "plots/hpatches/posfeat.csv",
        "plots/hpatches/posfeat_sift.csv",
        "plots/hpatches/sift.csv",
        "results/aachen/posfeat.txt",
    ):
        assert (repo / path).is_file(), path
    hp = json.loads((repo / "metrics/hpatches.json").read_text())
    assert set(hp) == {"posfeat", "posfeat_sift", "sift"}
    assert 0.0 <= hp["sift"]["overall"]["mma@3"] <= 1.0
    aachen = json.loads((repo / "metrics/aachen.json").read_text())
    assert set(aachen) == {"posfeat", "posfeat_sift", "sift"}
    eth = json.loads((repo / "metrics/eth.json").read_text())
    assert set(eth) == {"posfeat", "posfeat_sift", "sift"}

    # a second repro does nothing
    again = _run([py, "-m", "dvc", "repro"], repo)
    assert _stages_run(again) == set(), again[-2000:]

    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "results"], repo)
    before = (repo / "models/desc.pt").read_bytes()

    # the paper's optimizer: training and everything downstream reruns, nothing upstream
    exp = _run([py, "-m", "dvc", "exp", "run", "-S", "scale=tiny", "-S", "optimizer=sgd"], repo)
    ran = _stages_run(exp)
    assert {"train_desc", "train_kp", "eval_hpatches", "extract_posfeat@hpatches"} <= ran, exp[-3000:]
    assert not ran & {"demo_data", "prepare_megadepth"}, ran
    assert not {"extract_sift@hpatches", "extract_sift@aachen", "extract_sift@eth"} & ran, ran
    assert (repo / "models/desc.pt").read_bytes() != before

    diff = json.loads(_run([py, "-m", "dvc", "metrics", "diff", "--json"], repo))
    assert "metrics/train_desc.json" in diff, diff.keys()
    assert "metrics/hpatches.json" in diff, diff.keys()
