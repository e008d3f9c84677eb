"""Bad input ends in one clear message and a non-zero exit, never in a traceback; faults leave nothing half-written.

Each case breaks one thing and runs a real entry point: ``posfeat.cli.main`` in-process (the function the
``posfeat`` script and ``python -m posfeat`` call), a stage's ``main`` through the same entry helper its
``__main__`` uses, or a subprocess where the process boundary is the point (one line on stderr, exit
status, ``--debug``/``POSFEAT_DEBUG``, ``kill -9``). Every case asserts the exit status and the words of
the message: the file (and line) and what was expected.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from posfeat.cli import main as cli_main
from posfeat.entry import EXIT_BAD_INPUT, run_entry
from posfeat.io import DataError, FeatureWriter

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ helpers
def _texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize((rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _jpeg_bytes(seed: int = 0) -> bytes:
    ok, buf = cv2.imencode(".jpg", _texture(seed=seed), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """``posfeat ARGV`` in-process: (exit status, stderr)."""
    capsys.readouterr()
    try:
        rc = cli_main([str(a) for a in argv])
    except SystemExit as e:  # argparse and SystemExit("message")
        rc = e.code if isinstance(e.code, int) else 1
    return rc, capsys.readouterr().err


def _stage(fn, capsys, prog: str = "stages.test") -> tuple[int, str]:
    """A stage's main through the stages' entry helper: (exit status, stderr)."""
    capsys.readouterr()
    rc = run_entry(lambda argv: fn(), [], prog=prog)
    return rc, capsys.readouterr().err


def _error_line(err: str, prog: str) -> str:
    """The one error line (log lines of the run may precede it); no traceback anywhere."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _assert_bad(rc: int, err: str, *words: str, prog: str = "posfeat") -> str:
    assert rc == EXIT_BAD_INPUT, (rc, err)
    line = _error_line(err, prog)
    for w in words:
        assert w in line, (w, line)
    return line


def _images_dir(tmp_path: Path, n: int = 3) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    for i in range(n):
        cv2.imwrite(str(d / f"{i}.png"), _texture(seed=i))
    return d


def _extract(images: Path, out: Path, capsys, *extra) -> tuple[int, str]:
    return _cli(["extract", "--method", "sift", "--images", images, "--out", out, *extra], capsys)


def _params() -> dict:
    from stages.common import load_params

    return copy.deepcopy(load_params(ROOT / "params.yaml"))


def _subprocess(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 120):
    e = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    e.pop("POSFEAT_DEBUG", None)
    e.update(env or {})
    return subprocess.run(args, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------ images
@pytest.mark.parametrize(
    "kind, words",
    [
        ("jpeg_cut_in_half", ["truncated JPEG", "end-of-image marker"]),
        ("jpeg_middle_missing", ["premature end"]),
        ("ppm_header_short", ["P6 header declares 128x60", "does not match", "extra data"]),
        ("pgm_truncated", ["P5 header declares 128x96", "truncated"]),
        ("ppm_bad_header", ["malformed PNM header"]),
        ("not_an_image", ["cannot decode image"]),
    ],
)
def test_damaged_image_is_an_error_naming_it(tmp_path, capsys, kind, words):
    d = _images_dir(tmp_path)
    jpg = _jpeg_bytes()
    bad = {
        "jpeg_cut_in_half": ("bad.jpg", jpg[: len(jpg) // 2]),
        "jpeg_middle_missing": ("bad.jpg", jpg[: len(jpg) // 3] + jpg[2 * len(jpg) // 3 :]),
        "ppm_header_short": ("bad.ppm", b"P6\n128 60\n255\n" + _texture().tobytes()),
        "pgm_truncated": ("bad.pgm", b"P5\n128 96\n255\n" + _texture()[..., 0].tobytes()[:-500]),
        "ppm_bad_header": ("bad.ppm", b"P6\n128 x\n255\n" + _texture().tobytes()),
        "not_an_image": ("bad.png", b"this is not a PNG file at all"),
    }[kind]
    (d / bad[0]).write_bytes(bad[1])
    out = tmp_path / "f.h5"
    rc, err = _extract(d, out, capsys)
    _assert_bad(rc, err, str(d / bad[0]), *words)
    assert not out.exists() and not list(tmp_path.glob(".f.h5.*"))


def test_intact_jpeg_and_pnm_are_read(tmp_path):
    from posfeat.datasets.images import read_image

    img = _texture()
    (tmp_path / "a.jpg").write_bytes(_jpeg_bytes() + b"\x00\x00")  # padding after the end marker is fine
    cv2.imwrite(str(tmp_path / "a.ppm"), img)
    cv2.imwrite(str(tmp_path / "a.pgm"), img[..., 0])
    assert read_image(tmp_path / "a.jpg").shape == (96, 128, 3)
    assert np.array_equal(read_image(tmp_path / "a.ppm"), img[..., ::-1])
    assert read_image(tmp_path / "a.pgm", grayscale=True).shape == (96, 128)


def test_missing_image_folder(tmp_path, capsys):
    rc, err = _extract(tmp_path / "nowhere", tmp_path / "f.h5", capsys)
    _assert_bad(rc, err, "nowhere", "image folder not found")


# ------------------------------------------------------------------------------------ feature files
def _hpatches(tmp_path: Path, h_text: dict[int, str] | None = None) -> Path:
    root = tmp_path / "hpatches"
    seq = root / "v_test"
    seq.mkdir(parents=True)
    for k in range(1, 7):
        cv2.imwrite(str(seq / f"{k}.ppm"), _texture(seed=k))
        if k > 1:
            (seq / f"H_1_{k}").write_text((h_text or {}).get(k, "1 0 0\n0 1 0\n0 0 1\n"))
    return root


def _features(
    path: Path, dims: dict[int, int] | None = None, drop: tuple[int, str] | None = None, skip_image: int | None = None
) -> Path:
    rng = np.random.default_rng(0)
    with FeatureWriter(path) as w:
        for k in range(1, 7):
            if k == skip_image:
                continue
            d = (dims or {}).get(k, 128)
            kp = rng.random((20, 2)).astype(np.float32) * [127, 95]
            de = rng.standard_normal((20, d)).astype(np.float32)
            w.add(f"v_test/{k}.ppm", kp, np.ones(20), de / np.linalg.norm(de, axis=1, keepdims=True), (128, 96))
    if drop is not None:
        with h5py.File(path, "a") as h5:
            del h5[f"v_test/{drop[0]}.ppm/{drop[1]}"]
    return path


def _eval_hpatches(root: Path, features: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    return _cli(["eval-hpatches", "--root", root, "--features", f"m={features}", "--out", tmp_path / "m.json"], capsys)


def test_hpatches_eval_runs_on_intact_input(tmp_path, capsys):
    rc, err = _eval_hpatches(_hpatches(tmp_path), _features(tmp_path / "f.h5"), tmp_path, capsys)
    assert rc == 0, err
    assert (tmp_path / "m.json").is_file()


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing_file", ["feature file not found"]),
        ("not_hdf5", ["not a readable HDF5 feature file"]),
        ("no_descriptors", ["image 'v_test/3.ppm' has no dataset 'descriptors'", "expected keypoints, scores"]),
        ("no_keypoints_for_image", ["no features for 1 of 6 HPatches images", "'v_test/4.ppm'"]),
        ("descriptor_widths_differ", ["descriptor widths differ", "'v_test/1.ppm'", "128", "'v_test/5.ppm'", "has 64"]),
    ],
)
def test_bad_feature_file(tmp_path, capsys, case, words):
    f = tmp_path / "f.h5"
    if case == "not_hdf5":
        f.write_text("not hdf5")
    elif case == "no_descriptors":
        _features(f, drop=(3, "descriptors"))
    elif case == "no_keypoints_for_image":
        _features(f, skip_image=4)
    elif case == "descriptor_widths_differ":
        _features(f, dims={5: 64})
    rc, err = _eval_hpatches(_hpatches(tmp_path), f, tmp_path, capsys)
    _assert_bad(rc, err, str(f), *words)
    assert not (tmp_path / "m.json").exists()


def test_descriptor_widths_of_two_files_name_both():
    from posfeat.io import check_descriptor_dims

    with pytest.raises(DataError, match=r"a\.h5 \('x'\) has 128-dimensional descriptors, b\.h5 \('y'\) has 64"):
        check_descriptor_dims("a.h5", np.zeros((3, 128)), "b.h5", np.zeros((2, 64)), "x", "y")
    check_descriptor_dims("a.h5", np.zeros((3, 128)), "b.h5", np.zeros((0, 64)))  # nothing to match: fine


@pytest.mark.parametrize(
    "text, words",
    [
        ("1 0 0\n0 1 0\n", ["H_1_3:2", "expected 3 rows of 3 numbers", "found 2 row(s)"]),
        ("1 0 0\n0 one 0\n0 0 1\n", ["H_1_3:2"]),
    ],
)
def test_bad_homography_file(tmp_path, capsys, text, words):
    root = _hpatches(tmp_path, {3: text})
    rc, err = _eval_hpatches(root, _features(tmp_path / "f.h5"), tmp_path, capsys)
    _assert_bad(rc, err, *words)


# --------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", ["checkpoint not found"]),
        ("garbage", ["not a readable PoSFeat checkpoint"]),
        ("wrong_keys", ["expected a dict with keys config, backbone, detector"]),
    ],
)
def test_bad_checkpoint(tmp_path, capsys, case, words):
    w = tmp_path / "model.pt"
    if case == "garbage":
        w.write_bytes(b"\x80\x04garbage" * 10)
    elif case == "wrong_keys":
        torch.save({"weights": torch.zeros(3)}, w)
    rc, err = _cli(
        [
            "extract",
            "--method",
            "posfeat",
            "--weights",
            w,
            "--images",
            _images_dir(tmp_path),
            "--out",
            tmp_path / "f.h5",
        ],
        capsys,
    )
    _assert_bad(rc, err, str(w), *words)


# -------------------------------------------------------------------------------------------- params
def test_wrong_type_in_train_param_names_it(tmp_path, capsys):
    import stages.train_desc as stage

    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/megadepth.json").write_text(json.dumps({"root": "x", "pairs": {}, "images": {}}))
    params = _params()
    params["train_desc"]["batch_size"] = "four"
    rc, err = _stage(lambda: stage.main(params, base_dir=tmp_path), capsys)
    _assert_bad(rc, err, "train_desc.batch_size = 'four'", "expected int", prog="stages.test")


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("max_keypoints", "many", ["extract.hpatches.max_keypoints = 'many'", "expected int or None"]),
        ("threshold", [0.5], ["extract.hpatches.threshold = [0.5]", "expected float"]),
        ("nms_radius", True, ["extract.hpatches.nms_radius = True", "expected int"]),
        ("threshold_mode", "median", ["extract.hpatches", "threshold_mode must be one of"]),
        ("max_keypoint", 10, ["extract.hpatches: unknown settings ['max_keypoint']"]),
    ],
)
def test_bad_extract_param_never_reaches_the_extractor(tmp_path, capsys, key, value, words):
    import stages.extract as stage

    params = _params()
    params["datasets"]["hpatches"] = str(_hpatches(tmp_path))
    params["extract"]["hpatches"][key] = value
    rc, err = _stage(lambda: stage.main("hpatches", "sift", params=params, base_dir=tmp_path), capsys)
    _assert_bad(rc, err, *words, prog="stages.test")
    assert not (tmp_path / "features").exists()


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda p: p["datasets"].pop("hpatches"), ["datasets.hpatches is missing"]),
        (
            lambda p: p["eval"]["hpatches"].__setitem__("max_threshold", "15"),
            ["eval.hpatches.max_threshold = '15'", "expected int"],
        ),
        (lambda p: p.__setitem__("seed", 1.5), ["seed = 1.5", "expected int"]),
    ],
)
def test_missing_or_mistyped_stage_param(tmp_path, capsys, edit, words):
    import stages.eval_hpatches as stage

    params = _params()
    edit(params)
    rc, err = _stage(
        lambda: (
            stage.main("sift", params, base_dir=tmp_path)
            if "seed" not in words[0]
            else __import__("stages.eval_aachen").eval_aachen.main("sift", params, base_dir=tmp_path)
        ),
        capsys,
    )
    _assert_bad(rc, err, *words, prog="stages.test")


def test_demo_param_types(capsys):
    from stages.demo_data import demo_config

    with pytest.raises(DataError, match=r"demo\.hpatches_size = \[480\] \(list\): expected a list of 2"):
        demo_config({"hpatches_size": [480]})
    with pytest.raises(DataError, match=r"demo\.eth_images = '12'"):
        demo_config({"eth_images": "12"})


# ------------------------------------------------------------------------------ MegaDepth metadata
@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    """A demo world smaller than the session's (2 s): MegaDepth (one banned scene), Aachen layouts."""
    from posfeat.demo import generate_demo

    root = tmp_path_factory.mktemp("tiny") / "demo"
    generate_demo(
        root,
        seed=0,
        megadepth_scenes=2,
        megadepth_images=4,
        hpatches_sequences=1,
        eth_scenes=1,
        eth_images=3,
        aachen_db_images=6,
        aachen_day_queries=1,
        aachen_night_queries=1,
        megadepth_size=(160, 120),
        aachen_size=(160, 120),
        hpatches_size=(160, 128),
        eth_size=(160, 120),
        workers=1,
    )
    return root


@pytest.fixture()
def megadepth(tiny_world, tmp_path):
    """A copy of the tiny MegaDepth root, its manifest and stage params pointing at both."""
    root = tmp_path / "megadepth"
    shutil.copytree(tiny_world / "megadepth", root)
    params = _params()
    params["datasets"]["megadepth"] = str(root)
    params["datasets"]["megadepth_metadata"] = str(tmp_path / "manifest.json")
    return root, params


def _prepare(root: Path, params: dict, tmp_path: Path, capsys, rewrite_manifest: bool = True):
    import stages.prepare_megadepth as stage
    from posfeat.trainset.manifest import write_metadata_manifest

    if rewrite_manifest:
        write_metadata_manifest(root, tmp_path / "manifest.json")
    return _stage(lambda: stage.main(params, base_dir=tmp_path), capsys)


def _first_scene(root: Path) -> Path:
    """The first scene that is not IMC-banned (a banned scene's metadata is never read)."""
    banned = {"0008", "0021", "0024", "0063", "1589"}
    return next(p for p in sorted(root.glob("*/dense*/aligned")) if p.parents[1].name not in banned)


@pytest.mark.parametrize(
    "case, words",
    [
        ("too_few_fields", ["img_cam.txt:", "expected 19 fields"]),
        ("not_a_number", ["img_cam.txt:", "expected fx to be a number, found 'abc'"]),
        ("unknown_pair_image", ["pairs.txt:", "expected an image listed in img_cam.txt, found unknown 'ghost.jpg'"]),
        ("stale_manifest", ["manifest"]),
        ("wrong_type", ["prepare.max_pairs_per_scene = 'all'", "expected int"]),
    ],
)
def test_bad_megadepth_metadata(megadepth, tmp_path, capsys, case, words):
    root, params = megadepth
    rc, err = _prepare(root, params, tmp_path, capsys)
    assert rc == 0, err  # the intact copy prepares
    scene = _first_scene(root)
    img_cam, pairs = scene / "img_cam.txt", scene / "pairs.txt"
    lines = [ln for ln in img_cam.read_text().splitlines() if ln and not ln.startswith("#")]
    if case == "too_few_fields":
        img_cam.write_text(img_cam.read_text().replace(lines[1], " ".join(lines[1].split()[:10])))
    elif case == "not_a_number":
        f = lines[1].split()
        f[3] = "abc"
        img_cam.write_text(img_cam.read_text().replace(lines[1], " ".join(f)))
    elif case == "unknown_pair_image":
        pairs.write_text(pairs.read_text() + f"{lines[0].split()[0]} ghost.jpg\n")
    elif case == "stale_manifest":
        pairs.write_text(pairs.read_text() + "\n# edited after the manifest was made\n")
    elif case == "wrong_type":
        params["prepare"]["max_pairs_per_scene"] = "all"
    rc, err = _prepare(root, params, tmp_path, capsys, rewrite_manifest=case != "stale_manifest")
    _assert_bad(rc, err, *words, prog="stages.test")


def test_broken_pair_index_json(tmp_path, capsys):
    import stages.train_kp as stage

    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/megadepth.json").write_text('{"root": "x",\n "pairs": [1, 2,]}')
    rc, err = _stage(lambda: stage.main(_params(), base_dir=tmp_path), capsys)
    _assert_bad(rc, err, "megadepth.json:2", "not valid JSON", prog="stages.test")


# ----------------------------------------------------------------------------------- Aachen lists
@pytest.fixture()
def aachen(tiny_world, tmp_path):
    root = tmp_path / "aachen"
    shutil.copytree(tiny_world / "aachen", root)
    return root


@pytest.mark.parametrize(
    "case, words",
    [
        ("query_line_too_short", ["day_time_queries_with_intrinsics.txt:1", "expected at least 5 fields"]),
        ("unknown_camera_model", ["day_time_queries_with_intrinsics.txt:1", "expected a COLMAP camera model"]),
        ("pair_unknown_image", ["image_pairs_to_match", "found unknown 'db/ghost.jpg'"]),
    ],
)
def test_bad_aachen_lists(aachen, tmp_path, capsys, case, words):
    day = next((aachen / "queries").glob("day_time_queries_with_intrinsics*.txt"))
    first = day.read_text().splitlines()[0].split()
    if case == "query_line_too_short":
        day.write_text(" ".join(first[:3]) + "\n" + "\n".join(day.read_text().splitlines()[1:]) + "\n")
    elif case == "unknown_camera_model":
        day.write_text(
            " ".join([first[0], "FISHEYE_X"] + first[2:]) + "\n" + "\n".join(day.read_text().splitlines()[1:]) + "\n"
        )
    else:
        pl = next((aachen / "others").glob("image_pairs_to_match*.txt"))
        pl.write_text(pl.read_text() + f"{first[0]} db/ghost.jpg\n")
    feats = tmp_path / "f.h5"
    with FeatureWriter(feats) as w:
        w.add("db/none.jpg", np.zeros((1, 2)), np.ones(1), np.ones((1, 8)), (4, 4))
    rc, err = _cli(["eval-aachen", "--root", aachen, "--features", feats, "--out", tmp_path / "out"], capsys)
    _assert_bad(rc, err, *words)


# --------------------------------------------------------------------------- the entry points themselves
def _bad_extract_args(tmp_path: Path) -> list[str]:
    return ["extract", "--method", "sift", "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "f.h5")]


def test_python_m_posfeat_one_line_and_exit_status(tmp_path):
    p = _subprocess([sys.executable, "-m", "posfeat", *_bad_extract_args(tmp_path)])
    assert p.returncode == EXIT_BAD_INPUT, p.stderr
    assert p.stderr.strip().splitlines() == [f"posfeat: error: {tmp_path / 'nowhere'}: image folder not found"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, how):
    args = _bad_extract_args(tmp_path) + (["--debug"] if how == "flag" else [])
    p = _subprocess([sys.executable, "-m", "posfeat", *args], env={"POSFEAT_DEBUG": "1"} if how == "env" else None)
    assert p.returncode != 0
    assert "Traceback" in p.stderr and "DataError: " in p.stderr and "image folder not found" in p.stderr


def test_console_script_entry(tmp_path):
    """The ``posfeat`` script (``posfeat.cli:main``); run as its generated wrapper does when not installed here."""
    script = shutil.which("posfeat")
    cmd = (
        [script]
        if script and Path(script).parent == Path(sys.executable).parent
        else [sys.executable, "-c", "import sys; from posfeat.cli import main; sys.exit(main())"]
    )
    p = _subprocess(cmd + _bad_extract_args(tmp_path))
    assert p.returncode == EXIT_BAD_INPUT, p.stderr
    assert _error_line(p.stderr, "posfeat").endswith("image folder not found")
    assert _subprocess(cmd + ["--help"]).returncode == 0


def test_stage_module_one_line_and_exit_status(tmp_path):
    """``python -m stages.extract`` in a study folder whose params.yaml is broken, then mistyped."""
    study = tmp_path / "study"
    shutil.copytree(ROOT / "stages", study / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": f"{study}{os.pathsep}{ROOT}"}
    (study / "params.yaml").write_text("datasets:\n  hpatches: [unclosed\n")
    p = _subprocess([sys.executable, "-m", "stages.extract", "hpatches", "sift"], cwd=study, env=env)
    assert p.returncode == EXIT_BAD_INPUT, p.stderr
    assert "Traceback" not in p.stderr and "params.yaml" in _error_line(p.stderr, "stages.extract")
    params = _params()
    params["extract"]["hpatches"]["max_keypoints"] = "many"
    import yaml

    (study / "params.yaml").write_text(yaml.safe_dump(params))
    p = _subprocess([sys.executable, "-m", "stages.extract", "hpatches", "sift", "--debug"], cwd=study, env=env)
    assert p.returncode != 0 and "Traceback" in p.stderr and "ParamError" in p.stderr


def test_stage_without_arguments_rejects_some(monkeypatch, capsys):
    from stages.common import stage_entry

    monkeypatch.setattr(sys, "argv", ["stages.x", "extra-arg"])
    with pytest.raises(SystemExit) as e:
        stage_entry(lambda: None, "stages.x")
    assert "takes no arguments" in str(e.value.code)
    monkeypatch.setattr(sys, "argv", ["stages.x"])
    with pytest.raises(SystemExit) as e:
        stage_entry(lambda: (_ for _ in ()).throw(DataError("x.txt:3: expected a number")), "stages.x")
    err = capsys.readouterr().err.splitlines()  # the one error line
    assert e.value.code == EXIT_BAD_INPUT and err == ["stages.x: error: x.txt:3: expected a number"]


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    import posfeat.cli.extract as extract

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(extract, "run", broken)
    with pytest.raises(ZeroDivisionError):
        cli_main(_bad_extract_args(tmp_path))
    with pytest.raises(KeyError):
        run_entry(lambda argv: {}["x"], [])
    assert run_entry(lambda argv: 3, []) == 3 and run_entry(lambda argv: {"a": 1}, []) == 0


# ------------------------------------------------------------------------------- temporaries, faults
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporary_of_a_killed_write_is_removed(tmp_path, capsys):
    d = _images_dir(tmp_path, 2)
    out = tmp_path / "f.h5"
    stale = tmp_path / f".f.h5.{_dead_pid()}-abcd1234.h5"
    legacy = tmp_path / ".f.h5.k2j4_x9q.h5"  # mkstemp name without a pid (older runs)
    live = tmp_path / f".f.h5.{os.getppid()}-live0000.h5"  # a concurrent writer's: kept
    unrelated = tmp_path / ".f.h5.notes.txt"
    for p in (stale, legacy, live, unrelated):
        p.write_bytes(b"x" * 100)
    rc, err = _extract(d, out, capsys)
    assert rc == 0, err
    assert out.is_file() and not stale.exists() and not legacy.exists()
    assert live.exists() and unrelated.exists()


def test_kill_9_mid_extraction_then_rerun_gives_a_whole_file(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(40):
        cv2.imwrite(str(d / f"{i:02d}.jpg"), _texture(360, 480, seed=i))
    out = tmp_path / "feats" / "f.h5"
    cmd = [sys.executable, "-m", "posfeat", "extract", "--method", "sift", "--images", str(d), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.parent.glob(".f.h5.*")) and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # a few images into the file
    killed = proc.poll() is None
    print("killed mid-extraction:", killed, [p.name for p in out.parent.iterdir()])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if killed:
        assert not out.exists(), "a killed extraction left a file at the final path"
        assert list(out.parent.glob(".f.h5.*.h5")), "expected the killed run's temporary"
    p = _subprocess(cmd)
    assert p.returncode == 0, p.stderr
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == sorted(f"{i:02d}.jpg" for i in range(40))
        for name in h5:
            g = h5[name]
            assert g["descriptors"].shape == (128, len(g["keypoints"])) and len(g["keypoints"]) > 0
    assert list(out.parent.iterdir()) == [out], "the rerun left temporaries behind"


@pytest.mark.parametrize(
    "stage_name, edit, key",
    [
        ("train_kp", lambda p: p["train_kp"].__setitem__("optimizer", "adamw"), "train_kp.optimizer = 'adamw'"),
        ("train_desc", lambda p: p.__setitem__("optimizer", "adamw"), "optimizer = 'adamw'"),
    ],
)
def test_unknown_optimizer_is_one_line_before_training(tmp_path, capsys, stage_name, edit, key):
    """An optimizer the trainer does not have: one line naming the key, the choices and a fix; nothing written."""
    import importlib

    stage = importlib.import_module(f"stages.{stage_name}")
    params = _params()
    edit(params)
    rc, err = _stage(lambda: stage.main(params, base_dir=tmp_path), capsys)
    _assert_bad(rc, err, key, "expected one of adam, sgd", "dvc exp run -S", prog="stages.test")
    assert not (tmp_path / "models").exists()


def test_yaml_syntax_error_names_line_column_and_fix(tmp_path, capsys):
    """A params file with a bracket left open: file, line, column, what YAML expected and how to fix it."""
    from stages.common import load_params

    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 0\ndevice: auto\nextract:\n  methods: [posfeat, sift\n  other: 1\n")
    rc, err = _stage(lambda: load_params(bad), capsys)
    line = _assert_bad(rc, err, f"{bad}:5", "not valid YAML, column", "fix the syntax there", prog="stages.test")
    assert "git diff params.yaml" in line


def test_stage_says_what_it_runs_on_when_the_work_starts(tmp_path, demo_root):
    """A stage run as a module prints one start line (device, model, data) before its progress bar."""
    study = tmp_path / "study"
    shutil.copytree(ROOT / "stages", study / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": f"{study}{os.pathsep}{ROOT}"}
    import yaml

    params = _params()
    params["datasets"]["eth"] = str(demo_root / "eth")
    (study / "params.yaml").write_text(yaml.safe_dump(params))
    p = _subprocess([sys.executable, "-m", "stages.extract", "eth", "sift"], cwd=study, env=env)
    assert p.returncode == 0, p.stderr
    starts = [ln for ln in p.stderr.splitlines() if ln.startswith("extract sift: device")]
    n = sum(1 for _ in (demo_root / "eth").glob("*/images/*"))
    assert len(starts) == 1 and "model OpenCV SIFT" in starts[0], p.stderr
    assert f"data {n} images under {demo_root / 'eth'}" in starts[0]


# ------------------------------------------------------------------------------------------ full disk
_FILE_SIZE_LIMIT = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["posfeat"] + sys.argv[2:]
runpy.run_module("posfeat", run_name="__main__")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_feature_file_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """A feature file that cannot grow (a file-size limit stands in for a full disk): one line naming the file,
    exit status 2, no file and no temporary."""
    d = tmp_path / "images"
    d.mkdir()
    for i in range(6):
        cv2.imwrite(str(d / f"{i}.png"), _texture(360, 480, seed=i))
    out = tmp_path / "feats" / "f.h5"
    args = ["extract", "--method", "sift", "--images", str(d), "--out", str(out), "--max-keypoints", "4096"]
    p = _subprocess([sys.executable, "-c", _FILE_SIZE_LIMIT, str(64 << 10), *args])
    lines = p.stderr.strip().splitlines()
    assert p.returncode == EXIT_BAD_INPUT, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert lines[-1].startswith(f"posfeat: error: {out}: not written, no space left"), lines[-1]
    assert list(out.parent.iterdir()) == []


def test_colmap_database_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    """pycolmap ends the process when SQLite cannot write, so the free space is checked before each import:
    one line naming the database, exit status 2, and no results file."""
    from posfeat.sfm import colmap

    d = tmp_path / "S" / "images"
    d.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), _texture(240, 320, seed=i))
    feats = tmp_path / "f.h5"
    assert _extract(d, feats, capsys)[0] == 0
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=colmap.SPACE_MARGIN // 2))
    out = tmp_path / "res.json"
    rc, err = _cli(["eval-eth", "--root", tmp_path / "S", "--features", feats, "--out", out, "--device", "cpu"], capsys)
    assert rc == EXIT_BAD_INPUT
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"posfeat: error: {tmp_path / 'res_work' / 'database.db'}: not written, no space left")
    )
    assert not out.exists()


# ------------------------------------------------------------------------------------ photo corpus
def test_mixed_photo_corpus_is_read_as_colmap_reads_it(tmp_path):
    """Photos as people have them: a 50-megapixel JPEG, a PNG with alpha, a CMYK JPEG, a 16-bit PNG, a grey
    JPEG and one tagged "rotate 90°". The own-photos copy makes each one at most max_image_size, upright and
    plain 8-bit; our reader and pycolmap's then read the same pixels in the same frame from every copy."""
    import pycolmap
    from PIL import Image

    from posfeat.datasets.images import read_image
    from posfeat.photos.reconstruct import _downscaled_copy

    src, out = tmp_path / "photos", tmp_path / "copy"
    src.mkdir()
    rgb = cv2.cvtColor(_texture(600, 800, seed=1), cv2.COLOR_BGR2RGB)
    big = cv2.resize(rgb, (8688, 5792), interpolation=cv2.INTER_LINEAR)  # 50.3 MP
    Image.fromarray(big).save(src / "big.jpg", quality=85)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 90, np.uint8)])).save(src / "alpha.png")
    Image.fromarray(rgb).convert("CMYK").save(src / "cmyk.jpg", quality=92)
    cv2.imwrite(str(src / "deep.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(src / "grey.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(src / "turned.jpg", quality=92, exif=exif)
    names = sorted(p.name for p in src.iterdir())
    _downscaled_copy(src, names, out, 1600)
    expected = {"big.jpg": (1600, 1067), "turned.jpg": (600, 800)}  # downscaled; turned upright (w, h)
    for n in names:
        ours = read_image(out / n)  # RGB
        theirs = np.asarray(pycolmap.Bitmap.read(str(out / n), True).to_array()).reshape(ours.shape[:2] + (-1,))
        assert ours.shape[:2] == expected.get(n, (800, 600))[::-1], n
        theirs = np.repeat(theirs, 3, axis=2) if theirs.shape[2] == 1 else theirs
        assert np.abs(ours.astype(float) - theirs.astype(float)).mean() < 1.0, n  # the same pixels
    with Image.open(out / "big.jpg") as im:
        assert im.mode == "RGB" and im.getexif().get(0x0112, 1) == 1
