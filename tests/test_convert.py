"""``python -m posfeat convert-official``: official state dicts (names and shapes of the official code) → our model.

The key list comes from ``../shared/data/official-posfeat/state_dict_keys.json`` (the official code's
``ResUNet(resnet50)`` and ``KeypointDet(192)``); a copy ships in ``tests/data`` so the test runs in a clean clone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from posfeat.cli import main

SHIPPED = Path(__file__).resolve().parent / "data" / "official_posfeat_state_dict_keys.json"


@pytest.fixture(params=["shipped", "shared"])
def official_keys(request) -> dict:
    if request.param == "shipped":
        path = SHIPPED
    else:  # skips when ../shared/data is absent
        path = request.getfixturevalue("shared_data") / "official-posfeat" / "state_dict_keys.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return json.loads(path.read_text())


def _state_dicts(keys: dict, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)

    def make(spec):
        out = {}
        for k, shape in spec.items():
            if k.endswith("num_batches_tracked"):
                out[k] = torch.tensor(7, dtype=torch.int64)
            elif k.endswith("running_var"):
                out[k] = 0.5 + torch.rand(shape, generator=g)
            else:
                out[k] = 0.05 * torch.randn(shape, generator=g)
        return out

    return make(keys["backbone.pth"]), make(keys["localheader.pth"])


def test_converts_official_checkpoints_and_extracts(official_keys, tmp_path):
    bb, det = _state_dicts(official_keys)
    torch.save({f"module.{k}": v for k, v in bb.items()}, tmp_path / "backbone.pth")  # DataParallel layout
    torch.save(det, tmp_path / "localheader.pth")
    out = tmp_path / "official.pt"
    assert (
        main(["convert-official", str(tmp_path / "backbone.pth"), str(tmp_path / "localheader.pth"), "--out", str(out)])
        == 0
    )

    raw = torch.load(out, weights_only=True)  # the format of models/posfeat.pt
    assert raw["config"]["encoder"] == "resnet50" and raw["config"]["det_conv1"] is None
    assert raw["config"]["det_img"] == 64 and raw["config"]["det_mid"] == 128
    assert torch.equal(raw["backbone"]["iconv3.1.running_mean"], bb["iconv3.bn.running_mean"])
    assert torch.equal(raw["backbone"]["upconv2.conv.0.weight"], bb["upconv2.conv.conv.weight"])
    assert torch.equal(raw["backbone"]["layer3.5.bn3.weight"], bb["layer3.5.bn3.weight"])
    assert torch.equal(raw["detector"]["act.weight"], det["relu.weight"])
    assert raw["extra"]["dropped"] == sorted(k for k in bb if k.startswith("conv_coarse."))

    from posfeat.extraction import ExtractConfig, extract_posfeat, load_model

    model = load_model(out, "cpu")
    img = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    feats = extract_posfeat(model, img, ExtractConfig(max_keypoints=50, threshold=None, threshold_mode=None), "cpu")
    assert feats["descriptors"].shape[1] == 128 and 0 < len(feats["keypoints"]) <= 50
    assert np.isfinite(feats["descriptors"]).all()

    keep = tmp_path / "global.pt"
    main(
        [
            "convert-official",
            str(tmp_path / "backbone.pth"),
            str(tmp_path / "localheader.pth"),
            "--out",
            str(keep),
            "--keep-global-map",
        ]
    )
    raw = torch.load(keep, weights_only=True)
    assert raw["config"]["global_map"] and torch.equal(
        raw["backbone"]["conv_coarse.0.weight"], bb["conv_coarse.conv.weight"]
    )


def _refused(argv: list[str], capsys) -> str:
    """Run the command line on ``argv``; it must refuse (exit 2) with one error line, which is returned."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("posfeat: error:"), err
    return err[-1]


def test_refuses_mismatches_naming_the_keys(official_keys, tmp_path, capsys):
    bb, det = _state_dicts(official_keys)
    torch.save(det, tmp_path / "localheader.pth")
    args = lambda b: ["convert-official", str(b), str(tmp_path / "localheader.pth"), "--out", str(tmp_path / "m.pt")]  # noqa: E731

    broken = dict(bb)
    del broken["iconv2.bn.running_var"]
    broken["decoder.extra.weight"] = torch.zeros(3)
    torch.save(broken, tmp_path / "b1.pth")
    msg = _refused(args(tmp_path / "b1.pth"), capsys)
    assert "b1.pth" in msg and "iconv2.1.running_var" in msg and "decoder.extra.weight" in msg

    wrong = dict(bb)
    wrong["layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(wrong, tmp_path / "b2.pth")
    assert re.search(r"layer2\.0\.conv2\.weight \(128, 128, 1, 1\)", _refused(args(tmp_path / "b2.pth"), capsys))

    torch.save(det, tmp_path / "b3.pth")  # the two files swapped
    assert "b3.pth" in _refused(args(tmp_path / "b3.pth"), capsys)

    (tmp_path / "b4.pth").write_text("not a checkpoint")
    assert re.search("b4.pth.*not a readable", _refused(args(tmp_path / "b4.pth"), capsys))
    assert not (tmp_path / "m.pt").exists()
