"""benchmarks/speed/gpu_check.py: it refuses to run without CUDA or with bad arguments, its arithmetic is right, and its
CPU dry run (``--device cpu --tiny``) writes every section with the fields a GPU run fills, on a machine without
pycolmap, DVC, Hydra or ruamel. No timing is asserted."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.speed import gpu_check

ROOT = Path(__file__).resolve().parents[1]

HIDDEN = ("pycolmap", "hydra", "dvc", "dvclive", "ruamel")
"""packages a bare CUDA machine may lack: nothing gpu_check runs may import them"""


def _hide_packages(folder: Path) -> dict:
    """An environment whose Python processes cannot import :data:`HIDDEN` (a ``sitecustomize`` in ``folder``)."""
    (folder / "sitecustomize.py").write_text(
        "import importlib.util, sys\n_find = importlib.util.find_spec\n"
        f"_gone = {HIDDEN!r}\n"
        "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in _gone else _find(n, *a)\n"
        "for _m in _gone:\n    sys.modules[_m] = None\n"
    )
    return dict(os.environ, PYTHONPATH=f"{folder}{os.pathsep}{ROOT}", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: the check would run for real")
def test_gpu_check_fails_clearly_without_cuda(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.gpu_check", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "CUDA is not available" in proc.stderr and "nothing was measured" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "gpu", "--tiny"], "--device must be cpu, cuda or cuda:N, got 'gpu'"),
        (["--device", "cpu", "--tiny", "--budget", "0"], "--budget must be a positive number of seconds"),
        (["--device", "cpu"], "--device cpu runs only with --tiny"),
    ],
)
def test_bad_arguments_give_one_clear_line(argv, message, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert gpu_check.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpu_check: ") and message in err[0]
    assert not out.exists()


def test_wrapper_rejects_a_bad_timeout():
    env = dict(os.environ, GPU_CHECK_TIMEOUT="8min", PYTHON=sys.executable)
    proc = subprocess.run(
        [str(ROOT / "benchmarks" / "speed" / "gpu_check.sh"), "--device", "cpu", "--tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gpu_check: GPU_CHECK_TIMEOUT must be a whole number of seconds ≥ 60, got '8min'"
    ]


# ------------------------------------------------------------------------------------------ arithmetic
def test_linear_batch_fit_extrapolates_from_two_batches():
    fit = gpu_check.linear_batch_fit([(8, 5000.0), (4, 3000.0)], 24 * 1024)  # 1000 MiB + 500 MiB a pair
    assert fit["fixed_MiB"] == pytest.approx(1000) and fit["per_pair_MiB"] == pytest.approx(500)
    assert fit["largest_batch"] == 47  # 1000 + 500 × 47 = 24500 < 24576 ≤ 1000 + 500 × 48
    exact = gpu_check.linear_batch_fit([(1, 1500.0), (2, 2000.0)], 3000.0)  # batch 4 lands on the limit: not under
    assert exact["largest_batch"] == 3
    assert gpu_check.linear_batch_fit([(2, 900.0), (4, 900.0)], 1000.0)["largest_batch"] is None
    assert gpu_check.linear_batch_fit([(2, 2000.0), (4, 3000.0)], 500.0)["largest_batch"] == 0
    with pytest.raises(ValueError, match="two different batches"):
        gpu_check.linear_batch_fit([(4, 1.0), (4, 2.0)], 10.0)


def test_memory_section_on_cuda_figures_and_on_cpu_nulls():
    def row(stage, amp, reserved):  # what bench_training reports for a case (MiB)
        half = {"batch": 4, "peak_allocated_MiB": reserved[0] - 100, "peak_reserved_MiB": reserved[0]}
        return {"stage": stage, "amp": amp, "batch": 8, "peak_allocated_MiB": reserved[1] - 100}, {
            "peak_reserved_MiB": reserved[1],
            "memory_at_batch": half,
            "cuda_outside_allocator_MiB": 520.0,
        }

    cuda = [dict(a, **b) for a, b in (row("desc", "float32", (6000.0, 10000.0)), row("kp", "bfloat16", (3000, 5000)))]
    sec = gpu_check.memory_section(cuda)
    assert sec["limit_GiB"] == 24 and "extrapolation from two measured batches" in sec["method"]
    desc, kp = sec["cases"]
    assert desc["batches"] == [4, 8] and desc["peak_reserved_MiB"] == [6000.0, 10000.0]
    assert desc["fit_reserved"]["per_pair_MiB"] == pytest.approx(1000) and desc["largest_batch_under_limit"] == 22
    assert desc["fit_allocated"]["fixed_MiB"] == pytest.approx(1900)
    assert kp["largest_batch_under_limit"] == 47  # 1000 MiB + 500 MiB a pair
    cpu = gpu_check.memory_section(
        [{"stage": "desc", "amp": "float32", "batch": 4, "peak_allocated_MiB": None, "peak_reserved_MiB": None}]
    )
    (case,) = cpu["cases"]
    assert case["largest_batch_under_limit"] is None and "null" in case["note"] and "fit_reserved" not in case


def test_compare_losses_over_the_same_steps():
    same = gpu_check.compare_losses([2.0, 1.0], [2.0, 1.0])
    assert same["steps"] == 2 and same["max_relative_difference"] == 0.0
    r = gpu_check.compare_losses([2.0, 1.0, float("nan")], [2.2, 1.05, 1.0])
    assert r["max_relative_difference"] == pytest.approx(0.1) and r["losses_float32"][2] is None
    assert r["final_relative_difference"] is None  # the last step has no finite pair


def test_real_training_is_sized_to_the_budget():
    assert gpu_check.real_training_seconds(90, 400, 2, 40) == 90
    assert gpu_check.real_training_seconds(90, 200, 2, 40) == 60  # (200 - 2 × 40) / 2
    assert gpu_check.real_training_seconds(90, 10, 2, 40) == 9  # at least a tenth of the plan
    assert gpu_check.next_chunk(30.0, [5.0, 1.0, 1.0, 3.0], 4.0, 2) == 26  # median steady step 1 s, 4 s overhead
    assert gpu_check.next_chunk(5.0, [1.0, 1.0], 4.0, 2) == 0  # one step fits, fewer than the minimum


def test_cuda_tests_are_all_in_the_files_the_section_runs():
    """Every test that skips without CUDA lives in CUDA_TEST_FILES and is selected by ``-k "cuda or gpu"``."""
    skip = re.compile(r"@pytest\.mark\.skipif\(\s*not torch\.cuda\.is_available\(\).*?\)\s*\ndef (\w+)", re.S)
    found = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for name in skip.findall(path.read_text()):
            found.setdefault(f"tests/{path.name}", []).append(name)
    assert set(found) == set(gpu_check.CUDA_TEST_FILES)
    assert all("cuda" in n or "gpu" in n for names in found.values() for n in names), found
    cmd = gpu_check.cuda_tests_command("python")
    assert cmd[-len(gpu_check.CUDA_TEST_FILES) :] == [str(ROOT / f) for f in gpu_check.CUDA_TEST_FILES]


def test_suite_collects_without_pycolmap(tmp_path):
    """On a machine with torch but no pycolmap, dvc, Hydra or ruamel (a bare CUDA machine), the CUDA tests
    still collect, in the whole suite and in what the cuda_tests section runs."""
    env = _hide_packages(tmp_path)
    (tmp_path / "pycolmap.py").write_text("raise ImportError('no pycolmap on this machine')\n")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-k", "cuda or gpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "error" not in res.stdout.lower().split("\n")[-2], res.stdout[-2000:]
    assert "test_models.py" in res.stdout and "test_eth.py" not in res.stdout
    cmd = gpu_check.cuda_tests_command(sys.executable)
    res = subprocess.run([*cmd, "--collect-only"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"\b3/\d+ tests collected", res.stdout), res.stdout[-2000:]


def test_bench_training_reports_steady_state_losses_and_memory():
    from benchmarks.speed.bench_training import SCALES, run_case

    old = SCALES["demo"]["desc"]
    SCALES["demo"]["desc"] = ((64, 48), 2)  # tiny, in this process only
    try:
        r = run_case("desc", "demo", "fast", 2, "cpu", None, warmup=2, memory_batch=1)
        b = run_case("desc", "demo", "fast", 2, "cpu", None, amp=True, warmup=2, loss_share=False)
    finally:
        SCALES["demo"]["desc"] = old
    assert r["amp"] == "float32" and r["backbone_passes"] == 1 and r["freeze_bn"] is True
    assert r["optimizer"] == "Adam" and r["warmup"] == 2 and r["iters"] == 2
    assert 0 <= r["loss_share"] < 1 and r["seconds_per_iteration_network_only"] > 0
    assert 0 < r["loss_forward_seconds"] < r["seconds_per_iteration"]
    assert r["seconds_per_iteration_min"] <= r["seconds_per_iteration"] and len(r["seconds_per_iteration_all"]) == 2
    assert r["peak_allocated_MiB"] is None and r["peak_reserved_MiB"] is None  # CUDA's only: null on a CPU
    assert r["memory_at_batch"] == {"batch": 1, "peak_allocated_MiB": None, "peak_reserved_MiB": None}
    assert b["amp"] == "bfloat16" and len(b["losses"]) == len(r["losses"]) == 4
    assert all(math.isfinite(v) for v in r["losses"] + b["losses"])
    assert b["losses"][0] == pytest.approx(r["losses"][0], rel=0.05)  # same weights and batch, bf16 rounding


# ------------------------------------------------------------------------------------------ the CPU dry run
SECTIONS = {
    "cuda_tests",
    "training",
    "bf16_vs_fp32",
    "memory",
    "extraction",
    "matching",
    "train_real",
    "train_real_kp",
    "ddp",
}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """``gpu_check.sh --device cpu --tiny`` on a machine without pycolmap, DVC, Hydra or ruamel → (process, report)."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    env = dict(_hide_packages(tmp), PYTHON=sys.executable)
    out = tmp / "report.json"
    proc = subprocess.run(
        [str(ROOT / "benchmarks" / "speed" / "gpu_check.sh"), "--device", "cpu", "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.slow
def test_dry_run_writes_every_section(dry_run):
    proc, report = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert set(report["sections"]) == SECTIONS and report["failed_sections"] == []
    assert report["device"] == "cpu" and report["tiny"] is True and report["total_seconds"] > 0
    tests = report["sections"]["cuda_tests"]
    assert tests["returncode"] == 0 and tests["files"] == list(gpu_check.CUDA_TEST_FILES)
    assert re.search(r"\b3 (skipped|passed)\b", tests["summary"]), tests["summary"]  # passed where CUDA is
    ex, m = report["sections"]["extraction"], report["sections"]["matching"]
    assert ex["image_size"] == [320, 240] and 0 < ex["keypoints"] <= 2048 and ex["peak_reserved_MiB"] is None
    assert m["n"] == 2048 and 0 < m["matches"] <= 2048
    assert report["sections"]["ddp"]["replicas_agree"] is True


@pytest.mark.slow
def test_dry_run_training_steady_state_and_memory(dry_run):
    _, report = dry_run
    rows = report["sections"]["training"]
    assert {(r["stage"], r["amp"]) for r in rows} == {(s, a) for s in ("desc", "kp") for a in ("float32", "bfloat16")}
    for r in rows:
        assert r["warmup"] >= 1 and r["iters"] >= 2 and len(r["seconds_per_iteration_all"]) == r["iters"]
        assert 0 < r["seconds_per_iteration_min"] <= r["seconds_per_iteration"]
        assert r["peak_allocated_MiB"] is None and r["peak_reserved_MiB"] is None  # on a CPU: null
        assert r["memory_at_batch"]["batch"] == max(1, r["batch"] // 2)
    memory = report["sections"]["memory"]
    assert len(memory["cases"]) == 4 and "extrapolation from two measured batches" in memory["method"]
    for case in memory["cases"]:
        assert case["peak_reserved_MiB"] == [None, None] and case["largest_batch_under_limit"] is None
        assert "null" in case["note"]


@pytest.mark.slow
def test_dry_run_compares_bf16_with_fp32_on_the_same_steps(dry_run):
    _, report = dry_run
    cmp = report["sections"]["bf16_vs_fp32"]
    for stage in ("desc", "kp"):
        c = cmp[stage]
        assert c["amp"] == "bfloat16" and c["steps"] == len(c["losses_float32"]) == len(c["losses_bf16"]) >= 2
        assert all(v is not None for v in c["losses_float32"] + c["losses_bf16"])
        assert 0 <= c["max_relative_difference"] < 0.5


@pytest.mark.slow
def test_dry_run_trains_both_stages_for_real(dry_run):
    _, report = dry_run
    s1, s2 = report["sections"]["train_real"], report["sections"]["train_real_kp"]
    assert s1["stage"] == "desc" and s2["stage"] == "kp" and s1["pairs"] > 0
    for s in (s1, s2):
        assert s["steps"] >= 1 and len(s["loss_curve"]) == s["steps"] == sum(s["calls"])
        assert all(v is not None and math.isfinite(v) for v in s["loss_curve"])
        assert 0 < s["seconds_per_step_min"] <= s["seconds_per_step_mean"]
        assert s["peak_allocated_MiB"] is None and s["peak_reserved_MiB"] is None
    for key in ("score_map_before", "score_map_after"):
        stats = s2[key]
        assert stats["images"] >= 2 and 0 <= stats["median"] <= stats["p99"] <= stats["max"]
        assert 0.0099 <= stats["top1pct_mass_share"] <= 1  # 0.01: a flat map


@pytest.mark.slow
def test_real_training_calls_resume_where_the_last_one_stopped(tmp_path, monkeypatch):
    """Real training in two calls of 2 steps (the second resumed from the first's checkpoint) has the loss curve
    of one call of 4 steps: nothing is retrained or lost between calls."""
    from benchmarks.speed.bench_training import SCALES
    from posfeat.demo import write_megadepth
    from posfeat.trainset.prepare import prepare_megadepth

    write_megadepth(tmp_path / "megadepth", 0, 2, 5, (320, 240))
    index, _ = prepare_megadepth(tmp_path / "megadepth", seed=0)
    cfg = gpu_check.real_training_config("desc", "demo", 0)
    kw = dict(model_config=SCALES["demo"]["model"], optimizer="adam", lr=1e-4)
    runs = {}
    for name, first, then in (("split", 2, [2, 0]), ("whole", 4, [0])):
        sizes = iter(then)
        monkeypatch.setattr(gpu_check, "next_chunk", lambda *a, sizes=sizes: next(sizes))
        (tmp_path / name).mkdir()
        runs[name] = gpu_check._train_for("desc", index, cfg, 60.0, tmp_path / name, first, "cpu", **kw)
    assert runs["split"]["calls"] == [2, 2] and runs["whole"]["calls"] == [4]
    assert runs["split"]["steps"] == runs["whole"]["steps"] == len(runs["split"]["loss_curve"]) == 4
    assert runs["split"]["loss_curve"] == pytest.approx(runs["whole"]["loss_curve"], rel=1e-5)


@pytest.mark.slow
def test_a_terminated_run_keeps_what_it_measured(tmp_path):
    """SIGTERM (the wrapper's overall timeout) mid-run: exit status 124, the sections done stay in the report,
    which says it was cut short."""
    import signal
    import time

    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "benchmarks.speed.gpu_check", "--device", "cpu", "--tiny", "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--skip", "training", "ddp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 300
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the dry run ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 124
    finally:
        proc.kill()
        proc.wait()
    report = json.loads(out.read_text())
    assert "cuda_tests" in report["sections"] and "ddp" not in report["sections"]
    assert report["terminated"].startswith(f"signal {int(signal.SIGTERM)} after")
