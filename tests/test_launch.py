"""``train.gpus``: a training stage starts itself again under torchrun, inside DVC (two gloo processes on a CPU)."""

from __future__ import annotations

import json

import pytest
from training_setup import TINY_MODEL, index, tiny_cfg  # noqa: F401 (a fixture)

from posfeat.io import write_json
from posfeat.settings import ParamError
from stages import launch


def _params(gpus: int) -> dict:
    return {
        "seed": 0,
        "device": "cpu",
        "optimizer": "sgd",
        "lr": {"adam": 1e-4, "sgd": 1e-3},
        "model": TINY_MODEL,
        "train": {"gpus": gpus},
        "train_desc": {**tiny_cfg("desc", steps_per_epoch=2, vis_every=2), "freeze_bn": True},
        "train_kp": {**tiny_cfg("kp", steps_per_epoch=2, vis_every=2), "optimizer": "sgd", "lr": 1e-3},
    }


def test_the_global_batch_must_split_evenly():
    params = _params(3)
    with pytest.raises(ParamError, match=r"train_desc.batch_size = 2 is not divisible by train.gpus = 3"):
        launch.processes(params, "train_desc")
    with pytest.raises(ParamError, match=r"train.gpus = 0: expected an int >= 1"):
        launch.processes(_params(0), "train_kp")
    assert launch.processes(_params(2), "train_desc") == 2
    assert launch.processes({"train_kp": {"batch_size": 6}}, "train_kp") == 1  # no train section: one process


@pytest.mark.slow
def test_two_processes_train_both_stages_and_write_what_one_would(index, tmp_path):  # noqa: F811
    from stages import train_desc, train_kp

    write_json(tmp_path / "data/prepared/megadepth.json", index)
    params = _params(2)
    m1 = train_desc.main(params, base_dir=tmp_path)
    m2 = train_kp.main(params, base_dir=tmp_path)
    assert m1["world_size"] == m2["world_size"] == 2 and m1["steps"] == m2["steps"] == 2
    for rel in ("models/desc.pt", "models/posfeat.pt", "models/ckpt_kp/last.pt", "dvclive/train_kp/plots/metrics"):
        assert (tmp_path / rel).exists(), rel
    headline = json.loads((tmp_path / "metrics/train_kp.json").read_text())
    assert headline["steps"] == 2 and headline["loss"] == round(m2["loss"], 4)
