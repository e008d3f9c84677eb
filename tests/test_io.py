"""Atomic writes, JSON and the hloc-layout feature files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from posfeat.io import (
    DataError,
    FeatureReader,
    FeatureWriter,
    atomic_path,
    read_json,
    write_json,
)


def test_feature_file_roundtrip_exact(tmp_path):
    rng = np.random.default_rng(0)
    feats = {
        "seq/1.ppm": (rng.random((7, 2)) * 100, rng.random(7), rng.normal(size=(7, 128)), (640, 480)),
        "a/b/c.jpg": (np.zeros((0, 2)), np.zeros(0), np.zeros((0, 128)), (10, 20)),
    }
    path = tmp_path / "f.h5"
    with FeatureWriter(path) as w:
        for name, (k, s, d, size) in feats.items():
            w.add(name, k, s, d, size)
    with FeatureReader(path) as r:
        assert r.names() == sorted(feats)
        got_all = {name: r[name] for name in feats}
    for name, (k, s, d, size) in feats.items():
        got = got_all[name]
        assert np.array_equal(got["keypoints"], k.astype(np.float32))
        assert np.array_equal(got["scores"], s.astype(np.float32))
        assert np.array_equal(got["descriptors"], d.astype(np.float32))
        assert tuple(got["image_size"]) == size
    with h5py.File(path) as h5:  # hloc layout: descriptors D×N
        assert h5["seq/1.ppm/descriptors"].shape == (128, 7)
    with FeatureReader(path) as r:
        assert "seq/1.ppm" in r and "nope" not in r
        with pytest.raises(DataError, match="nope"):
            r["nope"]


def test_feature_writer_is_atomic(tmp_path):
    path = tmp_path / "f.h5"
    with pytest.raises(RuntimeError):
        with FeatureWriter(path) as w:
            w.add("x", np.zeros((1, 2)), np.zeros(1), np.zeros((1, 4)), (4, 4))
            raise RuntimeError("interrupted")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="inconsistent"):
        with FeatureWriter(path) as w:
            w.add("x", np.zeros((2, 2)), np.zeros(1), np.zeros((2, 4)), (4, 4))


def test_atomic_path_keeps_old_on_error(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "new.txt").write_text("new")
            1 / 0
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_json_errors_name_the_file(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2]}
    (tmp_path / "bad.json").write_text('{"x": \n')
    with pytest.raises(DataError, match="bad.json"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(DataError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="bad.h5"):
        FeatureReader(tmp_path / "bad.h5")["x"]


def test_float16_descriptors_halve_the_file_and_read_back_as_float32(tmp_path):
    """descriptor_dtype float16: stored as float16 (hloc's layout), read as float32, equal to float16 rounding."""
    rng = np.random.default_rng(0)
    de = rng.normal(size=(2000, 128)).astype(np.float32)
    de /= np.linalg.norm(de, axis=1, keepdims=True)
    kp = rng.uniform(0, 100, (2000, 2)).astype(np.float32)
    sizes = {}
    for dt in ("float32", "float16"):
        with FeatureWriter(tmp_path / f"{dt}.h5", descriptor_dtype=dt) as w:
            w.add("a.jpg", kp, np.ones(2000), de, (100, 100))
        with h5py.File(tmp_path / f"{dt}.h5", "r") as f:
            assert f["a.jpg/descriptors"].dtype == np.dtype(dt) and f["a.jpg/descriptors"].shape == (128, 2000)
        with FeatureReader(tmp_path / f"{dt}.h5") as r:
            got = r["a.jpg"]["descriptors"]
        assert got.dtype == np.float32 and got.shape == de.shape
        np.testing.assert_array_equal(got, de.astype(dt).astype(np.float32))
        sizes[dt] = (tmp_path / f"{dt}.h5").stat().st_size
    assert sizes["float16"] < 0.6 * sizes["float32"]
    with pytest.raises(ValueError, match="descriptor_dtype must be one of"):
        FeatureWriter(tmp_path / "x.h5", descriptor_dtype="int8")


def test_feature_method_name_from_the_file(tmp_path):
    """eval-aachen names its outputs after the method the feature file holds, else after the file."""
    from posfeat.io import feature_method_name

    kp = np.zeros((1, 2), np.float32)
    for attrs, want in (
        ({"method": "sift", "config": "{}"}, "sift"),
        ({"method": "posfeat", "config": '{"sift_keypoints": false}'}, "posfeat"),
        ({"method": "posfeat", "config": '{"sift_keypoints": true}'}, "posfeat_sift"),
        ({}, "plain"),
    ):
        path = tmp_path / ("plain.h5" if not attrs else f"{want}_file.h5")
        with FeatureWriter(path, attrs=attrs) as w:
            w.add("a.jpg", kp, np.ones(1), np.ones((1, 4)), (10, 10))
        assert feature_method_name(path) == want
