"""End to end: the real `dvc repro` through every stage on a tiny demo, then an experiment.

Copies the repository (tracked and untracked, not ignored, files) into a temporary git repository and
runs DVC as a user would, on the tiny scale (``dvc exp run -S scale=tiny``: Hydra composes conf/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 900, ok: bool = True) -> str:
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
    assert (proc.returncode == 0) == ok, f"{' '.join(cmd)}: exit status {proc.returncode}:\n{out[-6000:]}"
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


def _doc_lines(heading: str, doc: str = "docs/evaluation.md") -> list[str]:
    """The command lines of the first ``bash`` block after ``heading`` in ``doc``."""
    text = (ROOT / doc).read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(heading) :], re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def _metric_files(repo: Path, py: str) -> set[str]:
    shown = json.loads(_run([py, "-m", "dvc", "metrics", "show", "--json"], repo))
    return {path for rev in shown.values() for path in rev.get("data", {})}


def test_dvc_repro_then_experiments_and_a_fresh_clone(tmp_path):
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
    methods = ("posfeat", "posfeat_sift", "sift")
    expected = {
        "preflight",
        "imagenet",
        "demo_data@demo",
        "prepare_megadepth",
        "train_desc@posfeat",
        "train_kp@posfeat",
    }
    expected.add("report")
    expected |= {f"{s}_{d}@{m}" for s in ("extract", "eval") for d in ("hpatches", "aachen", "eth") for m in methods}
    assert ran == expected, f"{sorted(ran ^ expected)}:\n{out[-3000:]}"
    for path in (
        "models/desc.pt",
        "models/posfeat.pt",
        "features/posfeat/hpatches.h5",
        "features/sift/eth.h5",
        "features/posfeat_sift/aachen.h5",
        "plots/hpatches.csv",
        "plots/hpatches.png",
        "results/aachen/posfeat.txt",
        "results/hpatches/sift.json",
    ):
        assert (repo / path).is_file(), path
    curves = pd.read_csv(repo / "plots" / "hpatches.csv")
    assert sorted(set(curves["method"])) == sorted(methods)
    hp = json.loads((repo / "metrics/hpatches/sift.json").read_text())
    assert set(hp) == {"mma@1", "mma@3", "mma_score"} and 0.0 <= hp["mma@3"] <= 1.0
    assert set(json.loads((repo / "metrics/aachen/posfeat.json").read_text())) == {"day", "night"}
    assert _metric_files(repo, py) == {
        "metrics/prepare.json",
        "metrics/train_desc.json",
        "metrics/train_kp.json",
        *(f"metrics/{d}/{m}.json" for d in ("hpatches", "aachen", "eth") for m in methods),
    }

    # a second repro does nothing
    again = _run([py, "-m", "dvc", "repro"], repo)
    assert _stages_run(again) == set(), again[-2000:]

    # a team's remote (here a local folder): push, clone fresh, pull; the clone has nothing to redo
    remote = tmp_path / "remote"
    _run([py, "-m", "dvc", "remote", "add", "-d", "team", str(remote)], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "results"], repo)
    _run([py, "-m", "dvc", "push"], repo)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    _run([py, "-m", "dvc", "pull"], clone)
    assert (clone / "models/posfeat.pt").read_bytes() == (repo / "models/posfeat.pt").read_bytes()
    assert _stages_run(_run([py, "-m", "dvc", "repro"], clone)) == set()
    assert json.loads(_run([py, "-m", "dvc", "metrics", "diff", "--json"], clone)) == {}
    assert "nothing to commit" in _run(["git", "status"], clone)

    # the paper switch on a machine without CUDA and without the real data: it stops before any stage removes a result
    out = _run([py, "-m", "dvc", "exp", "run", "-S", "scale=paper", "-S", "data=real"], repo, ok=False)
    assert _stages_run(out) == {"preflight"}, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("stages.preflight: error:")]
    assert len(errors) == 1 and "datasets.hpatches = '/data/hpatches-sequences-release'" in errors[0], out[-3000:]
    assert "demo world" not in out  # data=real renders nothing
    assert _run(["git", "status", "--porcelain", "--", "metrics", "plots", "dvclive", "dvc.lock"], repo) == ""
    _run(["git", "checkout", "--", "params.yaml"], repo)  # the documented way back
    _run([py, "-m", "dvc", "checkout"], repo)
    assert _stages_run(_run([py, "-m", "dvc", "repro"], repo)) == set()

    before = (repo / "models/desc.pt").read_bytes()
    # the paper's optimizer: training and everything downstream of the model reruns, nothing else
    exp = _run([py, "-m", "dvc", "exp", "run", "-S", "scale=tiny", "-S", "optimizer=sgd"], repo)
    ran = _stages_run(exp)
    assert {"train_desc@posfeat", "train_kp@posfeat", "eval_hpatches@posfeat", "extract_hpatches@posfeat"} <= ran
    assert not ran & {"preflight", "imagenet", "demo_data@demo", "prepare_megadepth"}, ran
    assert not {s for s in ran if s.endswith("@sift")}, ran
    assert (repo / "models/desc.pt").read_bytes() != before
    diff = json.loads(_run([py, "-m", "dvc", "metrics", "diff", "--json"], repo))
    assert {"metrics/train_desc.json", "metrics/hpatches/posfeat.json"} <= set(diff), diff.keys()

    # the methods are a list: exactly these are extracted, evaluated and reported
    _run(["git", "checkout", "-q", "--", "."], repo)  # back to the committed study
    _run([py, "-m", "dvc", "checkout", "--force"], repo)
    exp = _run([py, "-m", "dvc", "exp", "run", "-S", "scale=tiny", "-S", "extract.methods=[posfeat,rootsift]"], repo)
    ran = _stages_run(exp)
    assert {s for s in ran if s.startswith(("extract", "eval"))} == {
        f"{s}_{d}@rootsift" for s in ("extract", "eval") for d in ("hpatches", "aachen", "eth")
    }, ran
    metrics = _metric_files(repo, py)
    assert {f"metrics/{d}/rootsift.json" for d in ("hpatches", "aachen", "eth")} <= metrics
    assert not {m for m in metrics if "sift.json" in m and "rootsift" not in m}, metrics
    assert sorted(set(pd.read_csv(repo / "plots" / "hpatches.csv")["method"])) == ["posfeat", "rootsift"]
    rootsift = {d: json.loads((repo / f"metrics/{d}/rootsift.json").read_text()) for d in ("hpatches", "eth")}

    # a method of one's own, registered and evaluated as docs/evaluation.md shows (line by line, at the tiny scale)
    for line in _doc_lines("## Your own method"):
        line = line.replace("python -m", f"{py} -m")
        if line.startswith("dvc "):
            line = f"{py} -m {line}"
        if "dvc exp run" in line:
            line += " -S scale=tiny"
        out = _run(["bash", "-c", line], repo)
        if "dvc exp run" in line:
            ran = _stages_run(out)
            assert {f"{s}_{d}@mine" for s in ("extract", "eval") for d in ("hpatches", "aachen", "eth")} <= ran
            assert not {s for s in ran if s.startswith(("train", "extract_hpatches@posfeat"))}, ran
    mine = {d: json.loads((repo / f"metrics/{d}/mine.json").read_text()) for d in ("hpatches", "eth")}
    assert mine["hpatches"] == rootsift["hpatches"]  # the same features, imported
    assert set(mine["eth"]) == set(rootsift["eth"])  # every scene
    assert "mine" in set(pd.read_csv(repo / "plots" / "hpatches.csv")["method"])

    # given weights replace training: no training stage, the checkpoint is a dependency
    (repo / "checkpoints").mkdir()
    shutil.copy(repo / "models/posfeat.pt", repo / "checkpoints/posfeat.pt")
    _run(["git", "checkout", "-q", "--", "."], repo)  # back to the committed study
    _run([py, "-m", "dvc", "checkout", "--force"], repo)
    exp = _run([py, "-m", "dvc", "exp", "run", "-S", "scale=tiny", "-S", "weights=given"], repo)
    assert not {s for s in _stages_run(exp) if s.startswith("train")}, exp[-2000:]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]  # (DVC keeps the lock entries of absent stages)
    assert "checkpoints/posfeat.pt" in {d["path"] for d in lock["extract_eth@posfeat"]["deps"]}
