"""benchmarks/gpu_check.py: it refuses to run without CUDA, and its measuring parts work (tiny, on a CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: the check would run for real")
def test_gpu_check_fails_clearly_without_cuda(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "CUDA is not available" in proc.stderr and "nothing was measured" in proc.stderr
    assert not out.exists()


def test_gpu_check_parts_on_cpu():
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_check import part_extraction, part_matching

    m = part_matching("cpu", 300)
    assert m["n"] == 300 and 0 < m["matches"] <= 300 and m["seconds_per_pair"] > 0
    e = part_extraction("cpu", (64, 48), 100, "demo")
    assert e["image_size"] == [64, 48] and 0 < e["keypoints"] <= 100 and e["seconds_per_image"] > 0


def test_bench_training_reports_the_loss_share():
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_training import SCALES, run_case

    old = SCALES["demo"]["desc"]
    SCALES["demo"]["desc"] = ((64, 48), 1)  # tiny, in this process only
    try:
        r = run_case("desc", "demo", "fast", 1, "cpu", None)
    finally:
        SCALES["demo"]["desc"] = old
    assert r["amp"] == "float32" and r["backbone_passes"] == 1 and r["freeze_bn"] is True
    assert 0 <= r["loss_share"] < 1 and r["seconds_per_iteration_network_only"] > 0
    assert 0 < r["loss_forward_seconds"] < r["seconds_per_iteration"]


def test_suite_collects_without_pycolmap(tmp_path):
    """On a machine with torch but no pycolmap, dvc, Hydra or ruamel (a bare CUDA machine), the CUDA tests
    still collect (what gpu_check runs: `pytest -k "cuda or gpu"`)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "pycolmap.py").write_text("raise ImportError('no pycolmap on this machine')\n")
    hide = tmp_path / "sitecustomize.py"
    hide.write_text(
        "import importlib.util, sys\n_find = importlib.util.find_spec\n"
        "_gone = ('pycolmap', 'hydra', 'dvc', 'ruamel')\n"
        "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in _gone else _find(n, *a)\n"
        "for _m in _gone:\n    sys.modules[_m] = None\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{root}", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-k", "cuda or gpu"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "error" not in res.stdout.lower().split("\n")[-2], res.stdout[-2000:]
    assert "test_models.py" in res.stdout and "test_eth.py" not in res.stdout


def test_real_training_part_on_cpu():
    """The real-training section at the demo scale on a CPU: a few steps on rendered photographs, a loss curve."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_check import part_train_real

    r = part_train_real("cpu", "demo", 0.5, 2, 5)
    assert r["steps"] >= 5 and len(r["loss_curve"]) == r["steps"] and r["pairs"] > 0
    assert all(v == v for v in r["loss_curve"]) and r["seconds_per_step"] > 0
