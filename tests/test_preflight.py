"""The ``preflight`` stage: what the composed parameters ask of the machine, checked before any stage runs."""

from __future__ import annotations

import json

import pytest
import torch

from posfeat.io import DataError
from stages import preflight


def _params(tmp_path, **over) -> dict:
    params = {
        "device": "auto",
        "datasets": {
            "render": ["demo"],
            "megadepth": "data/demo/megadepth",
            "megadepth_metadata": "data/demo/megadepth_metadata.json",
            "hpatches": "data/demo/hpatches",
        },
        "photos": {"sources": {}},
        "weights": {"path": "models/posfeat.pt", "train": ["posfeat"]},
        "model": {"encoder": "daisy", "pretrained": False},
        "extract": {"methods": ["posfeat", "sift"]},
    }
    for key, value in over.items():
        node = params
        *parents, last = key.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    return params


def test_the_demo_passes_before_the_demo_world_exists(tmp_path):
    """Roots that a stage of the study makes (the demo world) are not required yet; the output is constant."""
    preflight.main(_params(tmp_path), base_dir=tmp_path)
    first = (tmp_path / preflight.OUT_PATH).read_bytes()
    preflight.main(_params(tmp_path, device="cpu"), base_dir=tmp_path)
    assert (tmp_path / preflight.OUT_PATH).read_bytes() == first  # nothing downstream reruns
    assert json.loads(first) == {"checks": list(preflight.CHECKS)}


def test_cuda_without_cuda_keeps_the_users_other_options(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DataError) as e:
        preflight.main(_params(tmp_path, device="cuda"), base_dir=tmp_path)
    message = str(e.value)
    assert "device = 'cuda'" in message and "add -S device=cpu to the same command" in message
    assert "git checkout -- params.yaml" in message and "\n" not in message
    assert not (tmp_path / preflight.OUT_PATH).exists()


def test_real_data_roots_manifest_weights_and_given_files_are_named(tmp_path):
    params = _params(
        tmp_path,
        **{
            "datasets.render": [],
            "datasets.hpatches": str(tmp_path / "hpatches-sequences-release"),
            "weights.train": [],
            "weights.path": "checkpoints/official.pt",
            "extract.methods": {"mine": {"kind": "given", "hpatches": "given/mine-hpatches.h5"}},
        },
    )
    with pytest.raises(DataError) as e:
        preflight.main(params, base_dir=tmp_path)
    message = str(e.value)
    for words in (
        "datasets.megadepth = 'data/demo/megadepth' does not exist",
        "datasets.megadepth_metadata = 'data/demo/megadepth_metadata.json' does not exist",
        "python -m posfeat megadepth-manifest",
        "hpatches-sequences-release' does not exist",
        "weights.path = 'checkpoints/official.pt': no such checkpoint",
        "extract.methods.mine.hpatches = 'given/mine-hpatches.h5': no such feature file",
    ):
        assert words in message, words
    (tmp_path / "hpatches-sequences-release").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "official.pt").write_bytes(b"x")
    with pytest.raises(DataError) as e:
        preflight.main(params, base_dir=tmp_path)
    assert "hpatches" not in str(e.value).split("extract.methods")[0] and "official.pt" not in str(e.value)


def test_missing_imagenet_weights_name_the_file_and_the_switch(tmp_path, monkeypatch):
    import urllib.error

    from posfeat.models import imagenet

    def offline(url, path, prefix):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(imagenet, "_download", offline)  # a machine without network
    with pytest.raises(DataError) as e:
        preflight.main(_params(tmp_path, **{"model.encoder": "resnet50", "model.pretrained": True}), base_dir=tmp_path)
    message = str(e.value)
    assert str(tmp_path / "torch") in message and "resnet50-0676ba61.pth" in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert "-S model.pretrained=false" in message


def test_photo_folders_are_checked_and_their_outputs_are_not(tmp_path):
    params = _params(tmp_path, **{"photos.sources": {"own": "data/own_photos"}})
    params["datasets"].update(megadepth="data/photos/own", megadepth_metadata="data/photos/own_metadata.json")
    with pytest.raises(DataError, match=r"photos.sources.own = 'data/own_photos': no such photo folder") as e:
        preflight.main(params, base_dir=tmp_path)
    assert "datasets.megadepth" not in str(e.value)
    (tmp_path / "data" / "own_photos").mkdir(parents=True)
    preflight.main(params, base_dir=tmp_path)
