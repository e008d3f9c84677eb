"""Own photos as a training set (posfeat.photos.build): collections in, the MegaDepth layout out.

The real-photo tests take the Strecha castle and entry images of the shared real data as a user's raw photos:
no cameras, no EXIF, the entry images at mixed sizes. Measured over seeds 0, 1, 2 (2-core Intel Xeon, one COLMAP
thread): castle 19/19 and entry 10/10 registered every time, median rotation error after alignment 0.37-0.40° and
0.17-0.19° (max 0.99-1.07° and 0.31-0.33°), against the asserted 0.5°; about 30 s for both.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from training_setup import TINY_MODEL, tiny_cfg

from posfeat.io import DataError
from posfeat.photos.build import build_training_set, check_photos, find_collections
from posfeat.photos.config import PhotosConfig
from posfeat.photos.reconstruct import _downscaled_copy


def _photo(path, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_collections_are_the_folder_or_its_subfolders(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    for i in range(3):
        _photo(one / f"{i}.jpg")
    assert find_collections(one) == {"one": one}
    many = tmp_path / "many"
    for place in ("a", "b"):
        (many / place).mkdir(parents=True)
        _photo(many / place / "x.png")
    (many / "empty").mkdir()
    assert find_collections(many) == {"a": many / "a", "b": many / "b"}
    with pytest.raises(DataError, match="no photos"):
        find_collections(many / "empty")
    with pytest.raises(DataError, match="not found"):
        find_collections(tmp_path / "missing")


def test_too_few_and_unreadable_photos_are_named(tmp_path):
    for i in range(2):
        _photo(tmp_path / f"{i}.jpg")
    with pytest.raises(DataError, match="2 photos; a collection needs at least 3"):
        check_photos(tmp_path, PhotosConfig())
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        check_photos(tmp_path, PhotosConfig())


def test_downscaled_copy_keeps_the_focal_prior_and_turns_upright(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm
    Image.new("RGB", (400, 300), (10, 20, 30)).save(src / "turned.jpg", exif=exif.tobytes())
    Image.new("RGB", (100, 80)).save(src / "small.jpg")
    _downscaled_copy(src, ["turned.jpg", "small.jpg"], out, max_size=200)
    with Image.open(out / "turned.jpg") as im:
        assert im.size == (150, 200)  # upright (portrait), long side 200
        assert im.getexif()[0x0112] == 1 and im.getexif().get_ifd(0x8769)[0xA405] == 28
    assert (out / "small.jpg").read_bytes() == (src / "small.jpg").read_bytes()  # small and upright: copied


def test_no_overlap_is_a_clear_error_and_nothing_is_written(tmp_path):
    src = tmp_path / "noise"
    src.mkdir()
    for i in range(4):
        _photo(src / f"{i}.jpg", size=(320, 240), seed=i)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no collection became a training scene"):
        build_training_set(src, out, PhotosConfig(max_keypoints=500))
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    from posfeat.cli import main

    (tmp_path / "p").mkdir()
    _photo(tmp_path / "p" / "a.jpg")
    assert main(["photos", "--images", str(tmp_path / "p"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("posfeat: error: ") and "a collection needs at least 3" in err[-1]
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ real photographs
def _rotation_errors(gt: dict, est: dict) -> np.ndarray:
    """Per-image rotation errors (degrees) after the best world rotation (a similarity's rotation part)."""
    names = sorted(set(gt) & set(est))
    Rg = np.stack([gt[n].R for n in names])
    Re = np.stack([est[n].R for n in names])
    U, _, Vt = np.linalg.svd(np.einsum("nji,njk->ik", Re, Rg))
    A = U @ np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    cos = (np.einsum("nij,nik,kj->n", Rg, Re, A) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.fixture(scope="module")
def strecha_photos(shared_data, tmp_path_factory):
    """Strecha castle and entry as raw photos: no cameras, EXIF stripped, entry at mixed sizes."""
    root = tmp_path_factory.mktemp("photos") / "raw"
    for place in ("castle", "entry"):
        src = shared_data / "megadepth-strecha" / f"strecha_{place}" / "dense0" / "aligned" / "images"
        (root / place).mkdir(parents=True)
        for k, p in enumerate(sorted(src.glob("*.jpg"))):
            with Image.open(p) as im:
                if place == "entry" and k % 2:
                    im = im.resize((576, 384), Image.Resampling.LANCZOS)
                im.convert("RGB").save(root / place / p.name, quality=95)  # no EXIF
    return root


@pytest.mark.slow
def test_strecha_photos_become_a_training_set(strecha_photos, shared_data, tmp_path):
    from posfeat.datasets.megadepth import read_img_cam, read_pairs
    from posfeat.training.loop import train
    from posfeat.trainset.prepare import prepare_megadepth

    out = tmp_path / "md"
    summary = build_training_set(strecha_photos, out, PhotosConfig(), manifest=tmp_path / "md_metadata.json")
    assert summary["scenes"] == 2 and summary["skipped"] == 0
    for place, n in (("castle", 19), ("entry", 10)):
        aligned = out / place / "dense0" / "aligned"
        est = read_img_cam(aligned / "img_cam.txt")
        gt = read_img_cam(shared_data / "megadepth-strecha" / f"strecha_{place}" / "dense0" / "aligned" / "img_cam.txt")
        assert len(est) == n, f"{place}: {len(est)}/{n} registered"
        err = _rotation_errors(gt, est)
        assert np.median(err) <= 0.5, f"{place}: median rotation error {np.median(err):.2f}°"
        pairs = read_pairs(aligned / "pairs.txt", est)
        assert pairs and all((aligned / "images" / a).is_file() for a, _ in pairs)
        for cam in est.values():  # undistorted pinhole cameras of the written images
            with Image.open(aligned / "images" / cam.name) as im:
                assert im.size == (cam.width, cam.height)
    report = json.loads((out / "photos_report.json").read_text())
    assert {c["name"]: c["focal_sources"]["two_view"] for c in report["per_collection"]} == {"castle": 19, "entry": 10}
    assert json.loads((tmp_path / "md_metadata.json").read_text())["files"]

    index, prep = prepare_megadepth(out, seed=0)
    assert index["train"] and prep["scenes_kept"] == 2
    m = train(
        "desc",
        index,
        tiny_cfg("desc", steps_per_epoch=3),
        out_model=tmp_path / "desc.pt",
        ckpt_dir=tmp_path / "ckpt",
        model_config=TINY_MODEL,
        device="cpu",
        progress=False,
    )
    assert m["steps"] == 3 and np.isfinite(m["loss"])


@pytest.mark.slow
def test_a_failing_collection_is_skipped_and_counted(strecha_photos, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(strecha_photos / "entry", root / "entry")
    (root / "noise").mkdir()
    for i in range(4):
        _photo(root / "noise" / f"{i}.jpg", size=(320, 240), seed=i)
    summary = build_training_set(root, tmp_path / "md", PhotosConfig())
    assert (summary["scenes"], summary["skipped"]) == (1, 1)
    assert sorted(p.name for p in (tmp_path / "md").iterdir()) == ["entry", "photos_report.json"]
    skipped = [c for c in summary["per_collection"] if c["skipped"]]
    assert skipped[0]["name"] == "noise" and "overlap" in skipped[0]["skipped"]


@pytest.mark.slow
def test_an_existing_colmap_model_is_used_as_it_is(strecha_photos, tmp_path):
    """A place given as sparse/ + images/ is undistorted and written without a new reconstruction."""
    from posfeat.datasets.megadepth import read_img_cam
    from posfeat.photos.build import check_photos
    from posfeat.photos.reconstruct import reconstruct_collection

    cfg = PhotosConfig()
    names = check_photos(strecha_photos / "entry", cfg)
    rec, image_dir, _ = reconstruct_collection(strecha_photos / "entry", names, tmp_path / "work", cfg)
    place = tmp_path / "raw" / "entry"
    (place / "sparse" / "0").mkdir(parents=True)
    rec.write(str(place / "sparse" / "0"))
    shutil.copytree(image_dir, place / "images")
    summary = build_training_set(tmp_path / "raw", tmp_path / "md", cfg)
    (report,) = summary["per_collection"]
    assert report["from_model"] and report["focal_sources"] == {}
    assert len(read_img_cam(tmp_path / "md" / "entry" / "dense0" / "aligned" / "img_cam.txt")) == rec.num_reg_images()


def test_stage_refuses_an_unknown_photos_setting(tmp_path):
    from posfeat.settings import UnknownSettingError
    from stages.photos import main

    params = {"seed": 0, "prepare": {"rot_thr": 80.0}, "photos": {"sources": {"own": str(tmp_path)}, "max_keypoint": 5}}
    with pytest.raises(UnknownSettingError, match="max_keypoint"):
        main("own", params, base_dir=tmp_path)
    assert not (tmp_path / "data").exists()
