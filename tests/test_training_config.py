"""The stage configuration check (posfeat.training.config)."""

from __future__ import annotations

import pytest

from posfeat.training import check_stage_config
from training_setup import tiny_cfg


def test_stage_config_is_checked():
    with pytest.raises(ValueError, match="lacks"):
        check_stage_config("desc", {"image_size": [64, 64]})
    with pytest.raises(ValueError, match="multiples of 16"):
        check_stage_config("desc", tiny_cfg("desc", image_size=[100, 96]))
    with pytest.raises(ValueError, match="stage"):
        check_stage_config("detector", tiny_cfg("desc"))
