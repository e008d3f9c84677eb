"""The study's methods: specs from ``extract.methods``, and features given as hloc files (imported by the
``extract_<dataset>@<method>`` stage, then evaluated like any other method)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from posfeat.extraction.given import import_features
from posfeat.extraction.methods import builtin_spec, method_specs
from posfeat.io import DataError, FeatureReader
from posfeat.settings import ParamError

ROOT = Path(__file__).resolve().parents[1]


def _hloc_file(path: Path, names, dim: int = 8, n: int = 5, dtype=np.float16, seed: int = 0, scores=True) -> dict:
    """A feature file as hloc writes it: nested groups per name, descriptors D×N; returns what it wrote."""
    rng = np.random.default_rng(seed)
    written = {}
    with h5py.File(path, "w") as h5:
        for name in names:
            g = h5.create_group(name)
            kp = rng.uniform(0, 100, (n, 2)).astype(np.float32)
            de = rng.standard_normal((dim, n)).astype(dtype)
            g.create_dataset("keypoints", data=kp)
            g.create_dataset("descriptors", data=de)
            g.create_dataset("image_size", data=np.array([120, 100]))
            if scores:
                g.create_dataset("scores", data=np.linspace(1, 0.5, n).astype(np.float32))
            written[name] = (kp, de)
    return written


# ------------------------------------------------------------------------------------------- specs
def test_specs_from_the_composed_params_and_from_a_list():
    specs = method_specs(
        {
            "posfeat": {"kind": "posfeat", "hpatches": "m.pt", "aachen": "m.pt", "eth": "m.pt"},
            "mine": {"kind": "given", "hpatches": "hp.h5"},
        }
    )
    assert specs["posfeat"].needs_model and specs["posfeat"].source("eth") == "m.pt"
    assert not specs["mine"].needs_model and specs["mine"].source("hpatches") == "hp.h5"
    with pytest.raises(ParamError, match=r"extract.methods.mine.aachen is missing"):
        specs["mine"].source("aachen")
    assert method_specs(["posfeat", "sift"]) == {"posfeat": builtin_spec("posfeat"), "sift": builtin_spec("sift")}


@pytest.mark.parametrize(
    "value, message",
    [
        (["posfeat", "superpoint"], r"\['superpoint'\] are not built-in methods"),
        ({"x": {"kind": "disk"}}, r"extract.methods.x.kind = 'disk': expected one of"),
        ({"x": {"kind": "given", "hpatch": "a.h5"}}, r"unknown keys \['hpatch'\]"),
        ({"x": "a.h5"}, r"extract.methods.x = 'a.h5': expected a mapping"),
        ({}, "expected a non-empty mapping"),
    ],
)
def test_bad_specs_are_one_line_errors(value, message):
    with pytest.raises(ParamError, match=message):
        method_specs(value)


def test_every_method_file_in_conf_is_a_valid_spec():
    """conf/extract.methods/<name>.yaml holds one method named <name> (the Hydra option name)."""
    import yaml

    files = sorted((ROOT / "conf" / "extract.methods").glob("*.yaml"))
    assert {f.stem for f in files} >= {"posfeat", "posfeat_sift", "sift", "rootsift"}
    for f in files:
        spec = yaml.safe_load(f.read_text())
        assert list(spec) == [f.stem], f
        kind = spec[f.stem]["kind"]
        resolved = {k: v.replace("${weights.path}", "models/posfeat.pt") for k, v in spec[f.stem].items()}
        assert method_specs({f.stem: resolved})[f.stem].kind == kind


# ------------------------------------------------------------------------------------- given files
def test_import_keeps_the_needed_images_under_the_benchmark_names(tmp_path):
    src = tmp_path / "feats-mine.h5"
    names = ["Plaza/images/a.jpg", "Plaza/images/b.jpg"]
    written = _hloc_file(src, ["images/a.jpg", "images/b.jpg", "images/unused.jpg"])  # one folder less
    summary = import_features(src, names, tmp_path / "out.h5", "mine")
    assert summary["num_images"] == 2 and summary["descriptor_dim"] == 8
    with FeatureReader(tmp_path / "out.h5") as r:
        assert r.names() == names
        for name in names:
            kp, de = written["images/" + name.split("/")[-1]]
            f = r[name]
            np.testing.assert_array_equal(f["keypoints"], kp)
            np.testing.assert_array_equal(f["descriptors"], de.T.astype(np.float32))  # back to N×D
            np.testing.assert_array_equal(f["image_size"], [120, 100])
    with h5py.File(tmp_path / "out.h5") as h5:
        assert h5["Plaza/images/a.jpg/descriptors"].dtype == np.float16  # the storage type is kept
        assert h5.attrs["method"] == "mine"


def test_missing_scores_are_ones(tmp_path):
    src = tmp_path / "s.h5"
    _hloc_file(src, ["x.ppm"], scores=False, dtype=np.float32)
    import_features(src, ["x.ppm"], tmp_path / "o.h5", "m")
    with FeatureReader(tmp_path / "o.h5") as r:
        np.testing.assert_array_equal(r["x.ppm"]["scores"], np.ones(5, np.float32))


def test_a_missing_image_is_named_and_nothing_is_written(tmp_path):
    src = tmp_path / "partial.h5"
    _hloc_file(src, ["seq/1.ppm", "seq/2.ppm"])
    out = tmp_path / "o.h5"
    with pytest.raises(DataError, match=r"partial.h5: no features for image 'seq/3.ppm'"):
        import_features(src, ["seq/1.ppm", "seq/2.ppm", "seq/3.ppm"], out, "m")
    assert not out.exists() and not list(tmp_path.glob("o*"))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda g: g.__delitem__("descriptors"), r"image 'a.ppm' has no descriptors"),
        (lambda g: _replace(g, "descriptors", np.zeros((5, 3), np.float32)), r"D×N \(hloc's orientation\)"),
        (lambda g: _replace(g, "keypoints", np.zeros((5, 3), np.float32)), r"keypoints \(5, 3\)"),
        (lambda g: _replace(g, "keypoints", np.full((5, 2), np.nan, np.float32)), "non-finite"),
    ],
)
def test_a_wrong_layout_is_one_line_naming_the_file(tmp_path, damage, message):
    src = tmp_path / "bad.h5"
    _hloc_file(src, ["a.ppm"])
    with h5py.File(src, "a") as h5:
        damage(h5["a.ppm"])
    with pytest.raises(DataError, match=message) as e:
        import_features(src, ["a.ppm"], tmp_path / "o.h5", "m")
    assert str(src) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "o.h5").exists()


def _replace(group, key, value):
    del group[key]
    group.create_dataset(key, data=value)


def test_not_hdf5_and_absent_files(tmp_path):
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="x.h5: not a readable HDF5 feature file"):
        import_features(tmp_path / "x.h5", ["a"], tmp_path / "o.h5", "m")
    with pytest.raises(DataError, match="nope.h5: given feature file not found"):
        import_features(tmp_path / "nope.h5", ["a"], tmp_path / "o.h5", "m")


def test_stage_command_reports_a_bad_given_file_in_one_line(demo_root, tmp_path):
    """``python -m stages.extract hpatches mine`` on a file that lacks an image: one line, exit 2."""
    import yaml

    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "datasets": {"hpatches": str(demo_root / "hpatches")},
                "extract": {"methods": {"mine": {"kind": "given", "hpatches": str(tmp_path / "mine.h5")}}},
                "eval": {"hpatches": {"exclude": []}},
            }
        )
    )
    _hloc_file(tmp_path / "mine.h5", ["i_nothing/1.ppm"])
    code = (
        "import sys; from stages import common, extract; from posfeat.entry import run_entry; "
        f"p = common.load_params({str(tmp_path / 'params.yaml')!r}); "
        f"sys.exit(run_entry(lambda a: extract.main('hpatches', 'mine', p, base_dir={str(tmp_path)!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mine.h5: no features for image" in lines[0], proc.stderr
    assert not (tmp_path / "features" / "mine" / "hpatches.h5").exists()


def test_given_features_are_evaluated_like_the_study_s_own(demo_root, tmp_path):
    """SIFT features written by another tool's layout (nested groups, D×N, no study attributes), given as a
    method: HPatches gives them exactly the MMA of the same features extracted by the study."""
    from stages.eval_hpatches import main as eval_main
    from stages.extract import main as extract_main

    seqs = sorted(p.name for p in (demo_root / "hpatches").iterdir() if p.is_dir())
    params = {
        "device": "cpu",
        "datasets": {"hpatches": str(demo_root / "hpatches")},
        "extract": {
            "methods": {
                "sift": {"kind": "sift", "hpatches": "posfeat/extraction/sift.py"},
                "theirs": {"kind": "given", "hpatches": "given/theirs-hpatches.h5"},
            },
            "hpatches": {"max_keypoints": 512},
        },
        "eval": {"hpatches": {"max_threshold": 10, "exclude": seqs[2:]}},
    }
    extract_main("hpatches", "sift", params, base_dir=tmp_path)
    (tmp_path / "given").mkdir()
    with (
        FeatureReader(tmp_path / "features" / "sift" / "hpatches.h5") as r,
        h5py.File(tmp_path / "given" / "theirs-hpatches.h5", "w") as out,
    ):
        for name in r.names():  # hloc's layout, with the dataset folder as a leading component
            f = r[name]
            g = out.create_group(f"hpatches-sequences-release/{name}")
            g["keypoints"], g["descriptors"], g["image_size"] = f["keypoints"], f["descriptors"].T, f["image_size"]
    extract_main("hpatches", "theirs", params, base_dir=tmp_path)
    ours, theirs = (eval_main(m, params, base_dir=tmp_path) for m in ("sift", "theirs"))
    assert theirs["overall"] == ours["overall"] and theirs["features_per_image"] == ours["features_per_image"]
    assert json.loads((tmp_path / "metrics" / "hpatches" / "theirs.json").read_text())["mma@3"] > 0.3
