"""The MegaDepth pair index (posfeat.trainset.prepare) and the prepare_megadepth stage."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posfeat.datasets.megadepth import find_scenes, load_scene
from posfeat.io import DataError, write_json
from posfeat.trainset.manifest import write_metadata_manifest
from posfeat.trainset.pairs import read_index
from posfeat.trainset.prepare import num_val_pairs, pair_rotation_deg, pair_rotations_deg, prepare_megadepth
from stages import prepare_megadepth as stage
from stages.common import load_params


def _angle(Ra, Rb) -> float:
    """Independent relative rotation angle (degrees): scipy's rotation-vector magnitude of Rb Ra^T."""
    return float(np.degrees(Rotation.from_matrix(np.asarray(Rb) @ np.asarray(Ra).T).magnitude()))


def _listed_pairs(root: Path) -> dict[str, list[tuple[str, str, float]]]:
    """Per scene id, every pair of pairs.txt with its angle, parsed here without the library."""
    out = {}
    for scene in sorted(root.iterdir()):
        aligned = scene / "dense0" / "aligned"
        rows = [l.split() for l in (aligned / "img_cam.txt").read_text().splitlines() if l.strip() and l[0] != "#"]
        R = {r[0]: np.array(r[7:16], float).reshape(3, 3) for r in rows}
        pairs = [l.split() for l in (aligned / "pairs.txt").read_text().splitlines() if l.strip()]
        out[scene.name] = [(a, b, _angle(R[a], R[b])) for a, b in pairs]
    return out


def _scene_of(key: str) -> str:
    return key.split("/")[0]


def test_banned_scenes_dropped_and_report(demo_root):
    root = demo_root / "megadepth"
    index, report = prepare_megadepth(root, banned_scenes=["0008", "0021"], rot_thr=180.0, val_fraction=0.0)
    listed = _listed_pairs(root)
    assert {_scene_of(k) for k in index["images"]} == {"0015"}
    assert report["scenes_total"] == 3 and report["scenes_dropped_banned"] == 2 and report["scenes_kept"] == 1
    assert report["pairs_total"] == len(listed["0015"]) == report["pairs_kept"] == len(index["train"])
    assert index["val"] == [] and report["pairs_dropped_rotation"] == 0
    # the report is a flat dict of numbers (it is a DVC metrics file)
    assert all(isinstance(v, int) for v in report.values())
    # index entries are the cameras of img_cam.txt, keyed by their path relative to the root
    for key, cam in index["images"].items():
        assert (root / key).is_file()
        assert np.allclose(np.asarray(cam["R"]) @ np.asarray(cam["R"]).T, np.eye(3), atol=1e-6)
    # nothing banned: all three scenes are read
    _, report_all = prepare_megadepth(root, banned_scenes=[], rot_thr=180.0)
    assert report_all["scenes_kept"] == 3 and report_all["pairs_total"] == sum(len(v) for v in listed.values())


@pytest.mark.parametrize("rot_thr", [80.0, 20.0])
def test_rotation_filter_matches_independent_angles(demo_root, rot_thr):
    root = demo_root / "megadepth"
    index, report = prepare_megadepth(root, banned_scenes=[], rot_thr=rot_thr, val_fraction=0.2)
    listed = _listed_pairs(root)
    # pairs in the index: their angle from the index's R's is within the threshold
    got = set()
    for a, b in index["train"] + index["val"]:
        assert _angle(index["images"][a]["R"], index["images"][b]["R"]) <= rot_thr
        got.add((_scene_of(a), Path(a).name, Path(b).name))
    expected = {(s, a, b) for s, pairs in listed.items() for a, b, ang in pairs if ang <= rot_thr}
    dropped = sum(ang > rot_thr for pairs in listed.values() for _, _, ang in pairs)
    assert got == expected
    assert report["pairs_dropped_rotation"] == dropped and dropped > 0  # the demo has wide-baseline pairs
    assert report["pairs_kept"] == len(expected) == report["pairs_train"] + report["pairs_val"]


def test_vectorised_angles_equal_pairwise(demo_root):
    scene = find_scenes(demo_root / "megadepth")[1]
    cams, pairs = load_scene(scene)
    vec = pair_rotations_deg(cams, pairs)
    ref = [pair_rotation_deg(cams[a], cams[b]) for a, b in pairs]
    np.testing.assert_allclose(vec, ref, atol=1e-9)
    np.testing.assert_allclose(vec, [_angle(cams[a].R, cams[b].R) for a, b in pairs], atol=1e-6)
    assert pair_rotations_deg(cams, []).shape == (0,)


def test_cap_is_seeded_and_deterministic(demo_root):
    root = demo_root / "megadepth"
    kw = dict(banned_scenes=[], max_pairs_per_scene=3, rot_thr=180.0, val_fraction=0.0)
    a, rep_a = prepare_megadepth(root, seed=0, **kw)
    b, _ = prepare_megadepth(root, seed=0, **kw)
    c, _ = prepare_megadepth(root, seed=1, **kw)
    assert a == b
    assert a["train"] != c["train"]
    listed = _listed_pairs(root)
    per_scene = {s: sum(_scene_of(p[0]) == s for p in a["train"]) for s in listed}
    assert per_scene == {s: min(3, len(v)) for s, v in listed.items()}
    assert rep_a["pairs_dropped_cap"] == sum(max(0, len(v) - 3) for v in listed.values())
    # the capped pairs are a subset of pairs.txt, in file order
    for s, pairs in listed.items():
        order = [(x, y) for x, y, _ in pairs]
        kept = [(Path(p[0]).name, Path(p[1]).name) for p in a["train"] if _scene_of(p[0]) == s]
        idx = [order.index(k) for k in kept]
        assert idx == sorted(idx)


def test_train_val_split_disjoint_and_sized(demo_root):
    root = demo_root / "megadepth"
    index, report = prepare_megadepth(root, banned_scenes=[], rot_thr=180.0, val_fraction=0.25, seed=3)
    train = {tuple(p) for p in index["train"]}
    val = {tuple(p) for p in index["val"]}
    assert train and val and not (train & val)
    listed = _listed_pairs(root)
    for s, pairs in listed.items():
        n_val = sum(_scene_of(p[0]) == s for p in val)
        assert n_val == num_val_pairs(len(pairs), 0.25) == max(1, round(0.25 * len(pairs)))
    again, _ = prepare_megadepth(root, banned_scenes=[], rot_thr=180.0, val_fraction=0.25, seed=3)
    assert again == index


def test_num_val_pairs():
    assert [num_val_pairs(n, 0.1) for n in (0, 1, 2, 5, 14, 15, 100)] == [0, 0, 1, 1, 1, 2, 10]
    assert num_val_pairs(3, 0.9) == 2  # at least one training pair stays
    assert num_val_pairs(10, 0.0) == 0


def test_prepare_errors(demo_root, tmp_path):
    root = demo_root / "megadepth"
    with pytest.raises(DataError, match="no pair left"):
        prepare_megadepth(root, banned_scenes=["0008", "0015", "0021"])
    with pytest.raises(ValueError):
        prepare_megadepth(root, max_pairs_per_scene=0)
    with pytest.raises(ValueError):
        prepare_megadepth(root, val_fraction=1.0)
    copy_root = tmp_path / "megadepth"
    shutil.copytree(root / "0015", copy_root / "0015")
    aligned = copy_root / "0015" / "dense0" / "aligned"
    lines = (aligned / "img_cam.txt").read_text().splitlines()
    victim = lines[2].split()[0]
    (aligned / "images" / victim).unlink()
    with pytest.raises(DataError) as info:
        prepare_megadepth(copy_root)
    assert f"{aligned / 'img_cam.txt'}:3" in str(info.value) and victim in str(info.value)


def test_read_index_roundtrip_and_errors(demo_root, tmp_path):
    index, _ = prepare_megadepth(demo_root / "megadepth", banned_scenes=[])
    path = tmp_path / "index.json"
    write_json(path, index)
    assert read_index(path)[0] == index
    assert read_index(index)[0] is index  # a dict is checked as it is
    bad = copy.deepcopy(index)
    bad["train"].append([index["train"][0][0], "nope.jpg"])
    write_json(path, bad)
    with pytest.raises(DataError, match=r"train\[\d+\].*expected two image keys"):
        read_index(path)
    bad = copy.deepcopy(index)
    key = next(iter(bad["images"]))
    bad["images"][key]["R"] = [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    write_json(path, bad)
    with pytest.raises(DataError, match="R \\(rotation\\)"):
        read_index(path)
    bad = {k: v for k, v in index.items() if k != "train"}
    write_json(path, bad)
    with pytest.raises(DataError, match=f"{path.name}: expected key 'train'"):
        read_index(path)


def test_read_index_resolves_a_relative_root(tmp_path, monkeypatch):
    """A relative root: against ``root_base`` (a stage's repository) when given; else the working directory, and
    failing that the index file's folder; an absolute root as it is."""
    (tmp_path / "idx" / "md").mkdir(parents=True)
    path = tmp_path / "idx" / "index.json"
    write_json(path, {"root": "md", "images": {}, "train": [], "val": []})
    monkeypatch.chdir(tmp_path)
    assert read_index(path)[1] == tmp_path / "idx" / "md"  # nothing at ./md: the index's folder
    (tmp_path / "md").mkdir()
    assert read_index(path)[1] == Path("md")  # ./md exists: the working directory
    assert read_index(path, root_base=tmp_path / "repo")[1] == tmp_path / "repo" / "md"
    write_json(path, {"root": str(tmp_path / "abs"), "images": {}, "train": []})
    assert read_index(path, root_base=tmp_path / "repo")[1] == tmp_path / "abs"


# ------------------------------------------------------------------------------------------- the stage
def _stage_setup(demo_root: Path, tmp_path: Path) -> tuple[dict, Path]:
    base = tmp_path / "repo"
    shutil.copytree(demo_root / "megadepth", base / "data" / "md")
    write_metadata_manifest(base / "data" / "md", base / "data" / "md_meta.json")
    params = copy.deepcopy(load_params())
    params["datasets"]["megadepth"] = "data/md"
    params["datasets"]["megadepth_metadata"] = "data/md_meta.json"
    params["prepare"]["banned_scenes"] = ["0008", 21]  # an unquoted YAML id becomes an int
    return params, base


def test_stage_end_to_end(demo_root, tmp_path):
    params, base = _stage_setup(demo_root, tmp_path)
    index, report = stage.main(params, base_dir=base)
    written = json.loads((base / stage.INDEX_PATH).read_text())
    metrics = json.loads((base / stage.REPORT_PATH).read_text())
    assert written == index and metrics == report
    headline = json.loads((base / stage.METRICS_PATH).read_text())
    assert headline == {k: report[k] for k in ("scenes_kept", "images", "pairs_train", "pairs_val")}
    assert written["root"] == "data/md"
    assert {_scene_of(k) for k in written["images"]} == {"0015"}  # 0008 and 21 -> "0021" dropped
    assert metrics["scenes_dropped_banned"] == 2
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    assert read_index(base / stage.INDEX_PATH)[0] == index
    for a, b in written["train"] + written["val"]:
        assert _angle(written["images"][a]["R"], written["images"][b]["R"]) <= params["prepare"]["rot_thr"]
    # same params -> the same bytes (DVC would see no change)
    before = (base / stage.INDEX_PATH).read_bytes()
    stage.main(params, base_dir=base)
    assert (base / stage.INDEX_PATH).read_bytes() == before


def test_stage_refuses_stale_or_missing_manifest(demo_root, tmp_path):
    params, base = _stage_setup(demo_root, tmp_path)
    img_cam = base / "data" / "md" / "0015" / "dense0" / "aligned" / "img_cam.txt"
    img_cam.write_text(img_cam.read_text() + "# edited\n")
    with pytest.raises(DataError) as info:
        stage.main(params, base_dir=base)
    msg = str(info.value)
    assert "md_meta.json" in msg and "0015/dense0/aligned/img_cam.txt" in msg and "megadepth-manifest" in msg
    assert not (base / stage.INDEX_PATH).exists() and not (base / stage.METRICS_PATH).exists()
    (base / "data" / "md_meta.json").unlink()
    with pytest.raises(DataError, match="manifest not found"):
        stage.main(params, base_dir=base)
    # regenerate the manifest: the stage runs again
    write_metadata_manifest(base / "data" / "md", base / "data" / "md_meta.json")
    stage.main(params, base_dir=base)
    assert (base / stage.INDEX_PATH).is_file()


def test_prepare_never_opens_images(demo_root, tmp_path):
    root = tmp_path / "megadepth"
    shutil.copytree(demo_root / "megadepth" / "0015", root / "0015")
    before, _ = prepare_megadepth(root)
    for img in (root / "0015" / "dense0" / "aligned" / "images").iterdir():
        img.write_bytes(b"")  # existence is all prepare needs
    after, _ = prepare_megadepth(root)
    assert after == before
