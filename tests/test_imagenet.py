"""ImageNet weights: fetched checksum-verified into torch's cache, and the record the training depends on."""

from __future__ import annotations

import hashlib
import json

import pytest

from posfeat.io import DataError
from posfeat.models import imagenet
from posfeat.models.resunet import pretrained_weights_path


def test_the_published_checksum_prefix_is_read_from_the_file_name():
    assert imagenet.expected_sha256_prefix("resnet50") == "0676ba61"
    assert imagenet.weights_url("resnet50").endswith("/resnet50-0676ba61.pth")
    assert not imagenet.has_imagenet_weights("small") and not imagenet.has_imagenet_weights("daisy")


def test_no_pretrained_weights_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert imagenet.weights_record("resnet50", False) == {"pretrained": False}
    assert imagenet.weights_record("daisy", True) == {"pretrained": False}
    assert not list(tmp_path.rglob("*.pth"))


def test_absent_weights_are_downloaded_and_recorded(tmp_path, monkeypatch):
    payload = b"weights of a resnet"
    digest = hashlib.sha256(payload).hexdigest()
    calls = []

    def download(url, path, prefix):
        calls.append((url, prefix))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(imagenet, "_download", download)
    monkeypatch.setattr(imagenet, "expected_sha256_prefix", lambda encoder: digest[:8])
    record = imagenet.weights_record("resnet18", True)
    assert calls == [(imagenet.weights_url("resnet18"), digest[:8])]
    assert record == {
        "pretrained": True,
        "encoder": "resnet18",
        "file": pretrained_weights_path("resnet18").name,
        "url": imagenet.weights_url("resnet18"),
        "sha256": digest,
    }
    assert imagenet.weights_record("resnet18", True) == record and len(calls) == 1  # cached: no second download
    json.dumps(record)


def test_a_cached_file_with_another_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = pretrained_weights_path("resnet50")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the published weights")
    with pytest.raises(DataError, match=r"resnet50-0676ba61.pth: SHA-256 .* is not that of .*\(starts with 0676ba61\)"):
        imagenet.fetch_weights("resnet50")
