"""The stage configuration check (posfeat.training.config)."""

from __future__ import annotations

import pytest
from training_setup import tiny_cfg

from posfeat.training import stage_config


def test_stage_config_is_checked():
    with pytest.raises(ValueError, match="lacks"):
        stage_config("desc", {"image_size": [64, 64]})
    with pytest.raises(ValueError, match="multiples of 16"):
        stage_config("desc", tiny_cfg("desc", image_size=[100, 96]))
    with pytest.raises(ValueError, match="stage"):
        stage_config("detector", tiny_cfg("desc"))
    with pytest.raises(ValueError, match=r"unknown settings \['lr_gama'\]"):
        stage_config("desc", {**tiny_cfg("desc"), "lr_gama": 0.5})
    with pytest.raises(ValueError, match="train_kp.kp_penalty"):
        stage_config("kp", {**tiny_cfg("kp"), "kp_penalty": "small"})
    cfg = stage_config("desc", tiny_cfg("desc", epochs=3, log_every=7))
    assert stage_config("desc", cfg) is cfg
    again = stage_config("desc", {**tiny_cfg("desc"), "epochs": 5, "log_every": 2, "checkpoint_every": 9})
    assert again.fingerprinted() == cfg.fingerprinted() and "epochs" not in cfg.fingerprinted()
    assert stage_config("desc", tiny_cfg("desc", grid_size=8)).fingerprinted() != cfg.fingerprinted()


def test_autocast_dtype_per_device(monkeypatch, caplog):
    """``amp``: off → float32 (None); CPU → bfloat16 only where it is native, else float32 with a warning;
    CUDA → bfloat16 where supported, else float16."""
    import torch

    from posfeat import utils

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert utils.autocast_dtype(False, cpu) is None and utils.autocast_dtype(False, cuda) is None
    monkeypatch.setattr(utils, "cpu_has_native_bf16", lambda: True)
    assert utils.autocast_dtype(True, cpu) == torch.bfloat16
    monkeypatch.setattr(utils, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING"):
        assert utils.autocast_dtype(True, cpu) is None
    assert "no native bfloat16" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert utils.autocast_dtype(True, cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert utils.autocast_dtype(True, cuda) == torch.bfloat16
