"""The paper's recipe end to end, through the command a user types, on real-layout data (CPU, a few steps).

`dvc exp run -S scale=paper …` in a temporary copy of the repository: ResNet-50 U-Net at 640×480, two
backbone passes, BatchNorm in train mode, float32, the official colour jitter in both stages, the official
single-scale extraction and the ETH kit's protocol. Overridden, and only these: the step counts and batch
sizes, ``device=cpu`` (CI has no GPU: the explicit override the recipe asks for), ``model.pretrained=false``
(no ImageNet weights can be downloaded here), and the data: the MegaDepth-layout Strecha scenes and the
HPatches ``v_boat`` sequence of ``../shared/data`` (skipped when absent), the demo world's small Aachen and ETH
layouts.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import yaml
from test_pipeline import _copy_repo, _run, _stages_run

pytestmark = pytest.mark.slow

SMOKE = {
    "train_desc.epochs": 1,
    "train_desc.steps_per_epoch": 2,
    "train_desc.batch_size": 2,
    "train_desc.num_workers": 0,
    "train_desc.log_every": 1,
    "train_desc.vis_every": 2,
    "train_desc.checkpoint_every": 1,
    "train_kp.epochs": 1,
    "train_kp.steps_per_epoch": 2,
    "train_kp.batch_size": 2,
    "train_kp.num_workers": 0,
    "train_kp.log_every": 1,
    "train_kp.vis_every": 2,
    "train_kp.checkpoint_every": 1,
    "demo.megadepth_scenes": 3,
    "demo.megadepth_images": 6,
    "demo.hpatches_sequences": 1,
    "demo.eth_scenes": 1,
    "demo.eth_images": 5,
    "demo.aachen_db_images": 8,
    "demo.aachen_day_queries": 1,
    "demo.aachen_night_queries": 1,
    "device": "cpu",
    "model.pretrained": False,
}


def test_paper_recipe_runs_end_to_end(shared_data, tmp_path):
    repo = tmp_path / "study"
    repo.mkdir()
    _copy_repo(repo)
    py = sys.executable
    hpatches = tmp_path / "hpatches"
    shutil.copytree(shared_data / "hpatches-oxford" / "v_boat", hpatches / "v_boat")
    manifest = tmp_path / "megadepth_manifest.json"
    _run(
        [
            py,
            "-m",
            "posfeat",
            "megadepth-manifest",
            "--root",
            str(shared_data / "megadepth-strecha"),
            "--out",
            str(manifest),
        ],
        repo,
    )
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "study"], repo)
    data = {
        "datasets.megadepth": str(shared_data / "megadepth-strecha"),
        "datasets.megadepth_metadata": str(manifest),
        "datasets.hpatches": str(hpatches),
    }
    args = ["-S", "scale=paper"]
    for k, v in {**SMOKE, **data}.items():
        args += ["-S", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    out = _run([py, "-m", "dvc", "exp", "run", *args], repo, timeout=1500)
    ran = _stages_run(out)
    methods = ("posfeat", "posfeat_sift", "sift")
    expected = {"train_desc@posfeat", "train_kp@posfeat", "report"}
    expected |= {f"eval_{d}@{m}" for d in ("hpatches", "aachen", "eth") for m in methods}
    assert expected <= ran, out[-3000:]

    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["model"]["encoder"] == "resnet50" and params["train_desc"]["image_size"] == [640, 480]
    assert params["train_desc"]["backbone_passes"] == 2 and params["train_desc"]["freeze_bn"] is False
    assert params["train_kp"]["color_jitter"] == [1.0, 1.0, 1.0, 0.4]
    assert params["extract"]["eth"]["scales"] == [1.0] and params["eval"]["eth"]["ratio"] == 0.75
    for stage in ("train_desc", "train_kp"):
        m = json.loads((repo / "metrics" / f"{stage}.json").read_text())
        assert m["steps"] == 2 and m["loss"] == m["loss"], m  # ran both steps, finite loss
    assert json.loads((repo / "metrics/hpatches/sift.json").read_text())["mma@3"] > 0.2
    for m in methods:
        eth = json.loads((repo / f"results/eth/{m}.json").read_text())
        assert all(s["num_images"] == 5 for s in eth.values())
        assert set(json.loads((repo / f"metrics/eth/{m}.json").read_text())) == set(eth)
        assert set(json.loads((repo / f"metrics/aachen/{m}.json").read_text())) <= {"day", "night"}
    assert eth[next(iter(eth))]["protocol"]["matcher"] == "mutual NN + ratio 0.75"
