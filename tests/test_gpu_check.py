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
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
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
