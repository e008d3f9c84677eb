"""The stage configuration check (posfeat.training.config)."""

from __future__ import annotations

import pytest
from training_setup import tiny_cfg

from posfeat.training import check_stage_config


def test_stage_config_is_checked():
    with pytest.raises(ValueError, match="lacks"):
        check_stage_config("desc", {"image_size": [64, 64]})
    with pytest.raises(ValueError, match="multiples of 16"):
        check_stage_config("desc", tiny_cfg("desc", image_size=[100, 96]))
    with pytest.raises(ValueError, match="stage"):
        check_stage_config("detector", tiny_cfg("desc"))


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
