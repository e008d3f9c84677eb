"""The repository's own DVC remote (``storage/``, a folder): a fresh clone gets the demo's trained model from it
in seconds, without training and without network."""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

import yaml
from test_pipeline import _copy_repo, _run

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("models/desc.pt", "models/posfeat.pt")


def _locked_outs() -> dict[str, str]:
    """``{path: md5}`` of the models the committed ``dvc.lock`` records as stage outputs."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for st in lock.values() for o in st.get("outs", []) if o["path"] in MODELS}


def test_storage_holds_the_committed_models():
    outs = _locked_outs()
    assert set(outs) == set(MODELS)
    for path, md5 in outs.items():
        blob = ROOT / "storage" / "files" / "md5" / md5[:2] / md5[2:]
        assert blob.is_file(), f"{path} ({md5}) is not in storage/: dvc push -r storage {' '.join(MODELS)}"
        assert hashlib.md5(blob.read_bytes()).hexdigest() == md5
    config = (ROOT / ".dvc" / "config").read_text()
    assert "['remote \"storage\"']" in config and "url = ../storage" in config


def test_a_fresh_clone_pulls_the_model(tmp_path):
    repo = tmp_path / "study"
    repo.mkdir()
    _copy_repo(repo)
    shutil.copy2(ROOT / "dvc.lock", repo / "dvc.lock")
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "study"], repo)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    t0 = time.perf_counter()
    _run([sys.executable, "-m", "dvc", "pull", "-r", "storage", "models/posfeat.pt"], clone)
    seconds = time.perf_counter() - t0
    md5 = hashlib.md5((clone / "models" / "posfeat.pt").read_bytes()).hexdigest()
    assert md5 == _locked_outs()["models/posfeat.pt"], f"pulled in {seconds:.1f} s"
