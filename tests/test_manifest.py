"""The MegaDepth metadata manifest (posfeat.trainset.manifest): fingerprints img_cam.txt/pairs.txt, never images."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from posfeat import cli
from posfeat.io import DataError
from posfeat.trainset.manifest import check_metadata_manifest, metadata_manifest, write_metadata_manifest


@pytest.fixture
def md_copy(demo_root, tmp_path) -> Path:
    """A private copy of the demo MegaDepth root (tests modify it)."""
    root = tmp_path / "megadepth"
    shutil.copytree(demo_root / "megadepth", root)
    return root


def test_manifest_lists_metadata_md5(demo_root):
    root = demo_root / "megadepth"
    m = metadata_manifest(root)
    expected = {
        f"{s}/dense0/aligned/{f}": hashlib.md5((root / s / "dense0" / "aligned" / f).read_bytes()).hexdigest()
        for s in ("0008", "0015", "0021")
        for f in ("img_cam.txt", "pairs.txt")
    }
    assert m["files"] == expected
    # the session fixture's manifest describes the demo root
    assert check_metadata_manifest(root, demo_root / "megadepth_metadata.json")["files"] == expected


def test_shared_data_manifest(shared_data, tmp_path):
    root = shared_data / "megadepth-strecha"
    out = tmp_path / "m.json"
    m = write_metadata_manifest(root, out)
    assert sorted(m["files"]) == [
        f"{s}/dense0/aligned/{f}" for s in ("strecha_castle", "strecha_entry") for f in ("img_cam.txt", "pairs.txt")
    ]
    assert json.loads(out.read_text()) == m
    check_metadata_manifest(root, out)


def test_one_byte_change_is_detected(md_copy, tmp_path):
    out = tmp_path / "manifest.json"
    write_metadata_manifest(md_copy, out)
    img_cam = md_copy / "0021" / "dense0" / "aligned" / "img_cam.txt"
    data = bytearray(img_cam.read_bytes())
    i = len(data) // 2  # change one byte in the middle of the file
    data[i] = ord("7") if data[i] != ord("7") else ord("8")
    img_cam.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        check_metadata_manifest(md_copy, out)
    msg = str(info.value)
    assert str(out) in msg and "0021/dense0/aligned/img_cam.txt" in msg


def test_images_are_never_read(md_copy, tmp_path):
    before = metadata_manifest(md_copy)
    images = sorted((md_copy / "0015" / "dense0" / "aligned" / "images").iterdir())
    images[0].unlink()  # deleting an image ...
    images[1].write_bytes(b"not an image any more")  # ... or corrupting one does not change the manifest
    assert metadata_manifest(md_copy) == before
    out = tmp_path / "m.json"
    write_metadata_manifest(md_copy, out)
    assert json.loads(out.read_text()) == before


def test_structure_changes_are_detected(md_copy, tmp_path):
    out = tmp_path / "manifest.json"
    write_metadata_manifest(md_copy, out)
    shutil.copytree(md_copy / "0015", md_copy / "0099")  # a new scene folder
    with pytest.raises(DataError, match="0099/dense0/aligned"):
        check_metadata_manifest(md_copy, out)
    shutil.rmtree(md_copy / "0099")
    check_metadata_manifest(md_copy, out)
    (md_copy / "0008" / "dense0" / "aligned" / "pairs.txt").unlink()
    with pytest.raises(DataError, match=r"0008/dense0/aligned/pairs\.txt.*not found"):
        metadata_manifest(md_copy)


def test_missing_or_malformed_manifest(md_copy, tmp_path):
    with pytest.raises(DataError, match="manifest not found.*megadepth-manifest"):
        check_metadata_manifest(md_copy, tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1}')
    with pytest.raises(DataError, match="'files'"):
        check_metadata_manifest(md_copy, bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json:1"):
        check_metadata_manifest(md_copy, bad)
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(DataError, match="no MegaDepth scene folder"):
        metadata_manifest(empty)


def test_cli_writes_manifest(md_copy, tmp_path, capsys):
    out = tmp_path / "cli.json"
    assert cli.main(["megadepth-manifest", "--root", str(md_copy), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == metadata_manifest(md_copy)
    assert "6 metadata files" in capsys.readouterr().out


def test_demo_manifest_follows_its_images(md_copy, tmp_path):
    """with_images: one pixel of one image changes the manifest (so training reruns); the check still passes."""
    out = tmp_path / "m.json"
    before = write_metadata_manifest(md_copy, out, with_images=True)
    assert set(before) == {"version", "files", "images"} and "images" not in write_metadata_manifest(md_copy, out)
    img = sorted((md_copy / "0015" / "dense0" / "aligned" / "images").iterdir())[0]
    data = bytearray(img.read_bytes())
    data[-10] ^= 1
    img.write_bytes(bytes(data))
    after = write_metadata_manifest(md_copy, out, with_images=True)
    assert after["files"] == before["files"] and after["images"] != before["images"]
    check_metadata_manifest(md_copy, out)
