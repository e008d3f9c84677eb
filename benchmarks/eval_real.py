"""A trained model against SIFT on a folder of real photographs with ground truth (``--data``; a measurement).

    python benchmarks/eval_real.py --weights models/posfeat.pt                   # writes benchmarks/results/real.json
    python benchmarks/eval_real.py --weights exp.pt --out /tmp/real.json --no-eth

What it measures, on images the default study never trains on:

* **HPatches** (``hpatches-oxford/``, e.g. ``v_boat``: zoom + rotation): D2-Net protocol, mutual NN,
  MMA@1..10 and the MMA score, for three methods: ``posfeat`` (its keypoints, the study's HPatches
  extraction settings ``extract.hpatches`` of ``params.yaml``), ``posfeat_sift`` (PoSFeat descriptors on
  OpenCV SIFT keypoints, the official ``use_sift: True``) and ``sift``.
* **Warped real photographs** (``warped``): HPatches-layout viewpoint sequences made from the Strecha photographs
  by random camera turns (pan/tilt up to 35°, roll up to 10°) and zooms (1-1.8×) with a mild photometric change,
  the same three methods and protocol: a proxy for the HPatches ``v_*`` sequences that turn less than ``v_boat``.
* **Strecha epipolar precision** (``megadepth-strecha/<scene>``, consecutive pairs, exact cameras), day to day
  and **day to synthetic night** (the second image of every pair through the demo world's night style, a fixed
  seed per image: the folder has no night photographs, so this stands in for Aachen's night queries).
* **ETH layout** (``megadepth-strecha/<scene>``: real Strecha scenes with exact cameras): each scene is
  written as an ETH-layout scene (``images/`` + ``gt_cameras.txt``) in a scratch folder, then reconstructed
  with the study's ETH pipeline (``extract.eth`` of ``params.yaml`` for PoSFeat, ``eval.eth`` for matching,
  verification and mapping: mutual NN, one mapper thread) for the three methods: registered images, 3D points,
  median rotation error against the ground truth.

The PoSFeat settings come from ``--params`` (the study's ``params.yaml``); ``--scales``, ``--pyramid`` and
``--rotations`` (and their ``--eth-`` twins) override them for a sweep; ``--input-norm`` overrides the checkpoint's
``model.input_norm`` (test-time standardisation of a model trained without it).
SIFT features do not depend on the model; they are cached in the scratch folder (``--work``).

The ``--data`` folder, assembled from public releases (none of it is training data)::

    hpatches-oxford/v_boat/{1..6}.ppm, H_1_2 .. H_1_6
        the sequence ``v_boat`` of the HPatches sequences release (hpatches-sequences-release.tar.gz of
        github.com/hpatches/hpatches-dataset), unchanged; any other HPatches sequence folder is measured too.
    megadepth-strecha/strecha_castle/dense0/aligned/{images/NNNN.jpg, img_cam.txt, pairs.txt}
    megadepth-strecha/strecha_entry/dense0/aligned/...
        Strecha et al.'s dense multi-view scenes castle-P19 and entry-P10 (the EPFL CVLab "multi-view
        evaluation" release: JPEG images and one ``.camera`` file per image), in the MegaDepth layout that
        ``prepare_megadepth`` reads: images downscaled to 768 px wide and renamed 0000.jpg, ...; ``img_cam.txt``
        one line per image ``name w h fx fy cx cy R(3x3 row-major, world->camera) t`` with K scaled to the
        new width, R = Rc^T and t = -Rc^T C from the ``.camera`` file's camera-to-world rotation Rc and centre C;
        ``pairs.txt`` one ``nameA nameB`` line per pair (here: every pair of the scene).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from posfeat.datasets.hpatches import list_sequences, load_sequence  # noqa: E402
from posfeat.datasets.images import list_images, read_image  # noqa: E402
from posfeat.datasets.megadepth import read_img_cam  # noqa: E402
from posfeat.demo.files import write_image  # noqa: E402
from posfeat.demo.photometry import stylize  # noqa: E402
from posfeat.evaluation.eth.evaluate import ETHConfig, evaluate_scene  # noqa: E402
from posfeat.evaluation.hpatches import evaluate_pairs, summarize  # noqa: E402
from posfeat.extraction import ExtractConfig, extract_dataset, load_model  # noqa: E402
from posfeat.geometry import fundamental_from_poses, symmetric_epipolar_distance_np  # noqa: E402
from posfeat.io import FeatureReader  # noqa: E402
from posfeat.matching import match_descriptors  # noqa: E402
from stages.common import seeded_settings  # noqa: E402

HPATCHES_CFG: dict = {}  # PoSFeat extraction settings: the study's extract.hpatches (see main)
ETH_CFG: dict = {}  # the study's extract.eth
SUMMARY_KEYS = ("mma@1", "mma@3", "mma@10", "mma_score")
PARTS = ("hpatches", "warped", "epipolar", "epipolar_night", "eth")
ETH_KEYS = (
    "num_images",
    "num_reg_images",
    "num_sparse_points",
    "mean_track_length",
    "mean_reproj_error",
    "median_rotation_error_deg",
)


def _extract(method: str, root: Path, names: list[str], out: Path, model, cfg: dict, cache: bool = False) -> Path:
    """Extract ``names`` under ``root`` into ``out`` (reused when ``cache`` and present)."""
    if cache and out.is_file():
        return out
    config = ExtractConfig(**cfg)
    extract_dataset(
        method,
        root,
        names,
        out,
        model=model if method == "posfeat" else None,
        config=config,
        device="cpu",
        progress=False,
    )
    return out


#: PoSFeat files written by this process (the day images of the epipolar parts serve both), never reused
#: from an earlier run: the scratch folder outlives the model
_MADE: set[Path] = set()


def _extract_posfeat(root: Path, names: list[str], stem: Path, model, cfg: dict) -> dict[str, Path]:
    """PoSFeat's keypoints and PoSFeat descriptors on SIFT keypoints of ``names``, from one network pass
    → ``{"posfeat": <stem>_posfeat.h5, "posfeat_sift": <stem>_posfeat_sift.h5}``."""
    out = {"posfeat": Path(f"{stem}_posfeat.h5"), "posfeat_sift": Path(f"{stem}_posfeat_sift.h5")}
    if not set(out.values()) <= _MADE:
        extract_dataset(
            "posfeat",
            root,
            names,
            out["posfeat"],
            model=model,
            config=ExtractConfig(**cfg),
            device="cpu",
            progress=False,
            sift_out=out["posfeat_sift"],
        )
        _MADE.update(out.values())
    return out


def eval_hpatches(root: Path, work: Path, model, tag: str = "hp") -> dict:
    """MMA of posfeat / posfeat_sift / sift on every sequence under the HPatches-layout ``root``."""
    names = [im for s in list_sequences(root, ()) for im in load_sequence(root, s).images]
    feats = {
        **_extract_posfeat(root, names, work / tag, model, HPATCHES_CFG),
        "sift": _extract("sift", root, names, work / f"{tag}_sift.h5", None, HPATCHES_CFG, cache=True),
    }
    sequences = list_sequences(root, ())
    out = {}
    for m, path in feats.items():
        raw = evaluate_pairs(root, path, sequences, 15, "cpu", progress=False)
        r = summarize(raw, 15)
        out[m] = {k: round(r["overall"][k], 4) for k in SUMMARY_KEYS} | {
            "matches_per_pair": r["matches_per_pair"],
            "mma@3_per_pair": [round(float(p[2]), 3) for p in raw.precision],
        }
    return out


def _viewpoint_homography(
    w: int,
    h: int,
    rng: np.random.Generator,
    max_tilt: float = 35.0,
    max_roll: float = 10.0,
    zoom=(1.0, 1.8),
    tries: int = 1000,
) -> np.ndarray:
    """A random HPatches-viewpoint-like homography ``H`` (reference pixels → target pixels) of a ``w×h`` image:
    the camera turned about its centre (pan and tilt up to ``max_tilt``°, roll up to ``max_roll``°; f = max(w, h))
    and zoomed in (``zoom``, log-uniform), resampled until the whole target lies inside the reference."""
    f = float(max(w, h))
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64).T
    for _ in range(tries):
        pan, tilt = rng.uniform(-max_tilt, max_tilt, 2)
        roll = rng.uniform(-max_roll, max_roll)
        z = float(np.exp(rng.uniform(*np.log(zoom))))
        R = cv2.Rodrigues(np.deg2rad([tilt, pan, roll]))[0]
        Kz = K.copy()
        Kz[0, 0] = Kz[1, 1] = f * z
        H = Kz @ R @ np.linalg.inv(K)
        back = np.linalg.inv(H) @ corners  # the target's corners in the reference
        if (back[2] > 0).all():
            xy = back[:2] / back[2]
            if (xy[0] >= 0).all() and (xy[0] <= w - 1).all() and (xy[1] >= 0).all() and (xy[1] <= h - 1).all():
                return H / H[2, 2]
    raise RuntimeError(f"no homography of a {w}x{h} image kept the target inside in {tries} tries")


def warped_sequences(data: Path, out: Path, per_scene: int = 2, seed: int = 0) -> Path:
    """HPatches-layout viewpoint sequences made of real photographs: for ``per_scene`` images of every
    ``megadepth-strecha`` scene, 5 targets through :func:`_viewpoint_homography` with a mild photometric change
    (gain 0.8-1.25, gamma 0.8-1.25). A proxy for HPatches ``v_*`` with moderate rotation (``v_boat`` is the
    rotated extreme); synthetic warps, not real viewpoint changes."""
    if out.is_dir():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for md_scene in sorted(p for p in (data / "megadepth-strecha").iterdir() if p.is_dir()):
        images = next(md_scene.glob("dense*/aligned")) / "images"
        names = list_images(images)
        for j, name in enumerate(names[:: max(1, len(names) // per_scene)][:per_scene]):
            rng = np.random.default_rng([seed, j, len(md_scene.name)])
            ref = read_image(images / name)
            h, w = ref.shape[:2]
            seq = tmp / f"v_{md_scene.name}_{Path(name).stem}"
            write_image(seq / "1.png", ref, 95)
            for k in range(2, 7):
                H = _viewpoint_homography(w, h, rng)
                im = cv2.warpPerspective(ref, H, (w, h), flags=cv2.INTER_LINEAR).astype(np.float64) / 255.0
                im = np.clip(rng.uniform(0.8, 1.25) * im ** rng.uniform(0.8, 1.25), 0, 1)
                write_image(seq / f"{k}.png", (im * 255.0 + 0.5).astype(np.uint8), 95)
                np.savetxt(seq / f"H_1_{k}", H)
    tmp.rename(out)
    return out


def night_images(src: Path, names: list[str], out: Path, seed: int = 0) -> Path:
    """A night version of every image (the demo world's night style, :func:`stylize`, a fixed seed per image):
    a synthetic stand-in for night photographs, which the real-data folder does not have."""
    if not out.is_dir():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for i, name in enumerate(names):
            write_image(tmp / name, stylize(read_image(src / name), np.random.default_rng([seed, i]), "night"), 92)
        tmp.rename(out)
    return out


def epipolar_precision(data: Path, work: Path, model, thresholds=(1.0, 3.0), night: bool = False) -> dict:
    """Mutual-NN matches between consecutive images of the real ``megadepth-strecha`` scenes, scored by
    their symmetric epipolar distance under the exact cameras: precision at 1 and 3 px, matches per pair.
    (A necessary condition only: a wrong match along its epipolar line counts as right.) With ``night``
    the second image of every pair is its synthetic night version (:func:`night_images`)."""
    out: dict = {}
    for md_scene in sorted(p for p in (data / "megadepth-strecha").iterdir() if p.is_dir()):
        aligned = next(md_scene.glob("dense*/aligned"))
        cams = read_img_cam(aligned / "img_cam.txt")
        names = sorted(cams)
        roots = {"day": aligned / "images"}
        if night:
            roots["night"] = night_images(aligned / "images", names, work / "night" / md_scene.name)
        per_look = {
            look: {
                **_extract_posfeat(root, names, work / f"epi_{md_scene.name}_{look}", model, HPATCHES_CFG),
                "sift": _extract(
                    "sift", root, names, work / f"epi_{md_scene.name}_{look}_sift.h5", None, HPATCHES_CFG, cache=True
                ),
            }
            for look, root in roots.items()
        }
        for method in ("posfeat", "posfeat_sift", "sift"):
            files = {look: per_look[look][method] for look in roots}
            prec, counts = [], []
            with FeatureReader(files["day"]) as r1, FeatureReader(files["night" if night else "day"]) as r2:
                for a, b in zip(names[:-1], names[1:]):
                    fa, fb = r1[a], r2[b]
                    m = match_descriptors(fa["descriptors"], fb["descriptors"], mutual=True, device="cpu")
                    ca, cb = cams[a], cams[b]
                    F = fundamental_from_poses(ca.K, ca.R, ca.t, cb.K, cb.R, cb.t)
                    d = symmetric_epipolar_distance_np(
                        fa["keypoints"][m[:, 0]].astype(np.float64), fb["keypoints"][m[:, 1]].astype(np.float64), F
                    )
                    prec.append([(d <= t).mean() if len(d) else 0.0 for t in thresholds])
                    counts.append(len(m))
            p = np.mean(prec, 0)
            out.setdefault(method, {})[md_scene.name] = {
                **{f"precision@{t:g}": round(float(v), 4) for t, v in zip(thresholds, p)},
                "matches_per_pair": round(float(np.mean(counts)), 1),
            }
    return out


def write_eth_scene(megadepth_scene: Path, out: Path) -> Path:
    """A MegaDepth-layout scene (``dense*/aligned/{images, img_cam.txt}``) as an ETH-layout scene."""
    aligned = next(megadepth_scene.glob("dense*/aligned"))
    if not (out / "images").is_dir():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(aligned / "images", tmp / "images")
        shutil.copy(aligned / "img_cam.txt", tmp / "gt_cameras.txt")
        tmp.rename(out)
    return out


def eval_eth(data: Path, work: Path, model, config: ETHConfig) -> dict:
    """ETH statistics of posfeat / posfeat_sift / sift on every ``megadepth-strecha`` scene written as an ETH scene,
    reconstructed with the pipeline ``config`` (the study's ``eval.eth``)."""
    out: dict = {}
    for md_scene in sorted(p for p in (data / "megadepth-strecha").iterdir() if p.is_dir()):
        scene = write_eth_scene(md_scene, work / "eth" / md_scene.name)
        names = list_images(scene / "images")
        files = {
            **_extract_posfeat(scene / "images", names, work / f"eth_{md_scene.name}", model, ETH_CFG),
            "sift": _extract(
                "sift", scene / "images", names, work / f"eth_{md_scene.name}_sift.h5", None, ETH_CFG, cache=True
            ),
        }
        for method, f in files.items():
            r = evaluate_scene(
                scene, f, work / "eth_work" / method / md_scene.name, config, device="cpu", progress=False
            )
            out.setdefault(method, {})[md_scene.name] = {k: r.stats.get(k) for k in ETH_KEYS}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--weights", default=str(ROOT / "models/posfeat.pt"), help="PoSFeat checkpoint")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data"), help="the real data folder")
    ap.add_argument("--work", default="/tmp/posfeat_eval_real", help="scratch folder (SIFT cache, scenes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/real.json"), help="results JSON")
    ap.add_argument("--no-eth", action="store_true", help="skip the ETH-layout reconstructions (fast)")
    ap.add_argument(
        "--params",
        default=str(ROOT / "params.yaml"),
        help="the study's parameters: PoSFeat extraction settings from extract.hpatches (HPatches, "
        "epipolar precision) and extract.eth (ETH scenes); the options below override them",
    )
    ap.add_argument(
        "--scales",
        type=float,
        nargs="+",
        help="PoSFeat test-time image scales for HPatches and the epipolar precision (extract.hpatches.scales)",
    )
    ap.add_argument("--eth-scales", type=float, nargs="+", help="the same for the ETH scenes (extract.eth.scales)")
    ap.add_argument(
        "--pyramid",
        choices=("on", "off"),
        help="keep each scale's own keypoints and descriptors (extract.hpatches.pyramid)",
    )
    ap.add_argument("--eth-pyramid", choices=("on", "off"), help="the same for the ETH scenes (extract.eth.pyramid)")
    ap.add_argument(
        "--rotations",
        type=float,
        nargs="+",
        help="PoSFeat test-time in-plane rotations (degrees) for "
        "HPatches and the epipolar precision (extract.hpatches.rotations)",
    )
    ap.add_argument(
        "--eth-rotations", type=float, nargs="+", help="the same for the ETH scenes (extract.eth.rotations)"
    )
    ap.add_argument(
        "--pyramid-sift-size",
        type=float,
        help="SIFT keypoint size described at scale 1 in a pyramid (extract.*.pyramid_sift_size)",
    )
    ap.add_argument(
        "--input-norm",
        choices=("imagenet", "standardize"),
        help="override the checkpoint's model.input_norm (a test-time experiment)",
    )
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these parts")
    a = ap.parse_args(argv)
    params = yaml.safe_load(Path(a.params).read_text())
    study = params["extract"]
    eth_pipeline = ETHConfig.from_dict(seeded_settings(params, "eval.eth"))  # checked before any extraction
    for cfg, name, prefix in ((HPATCHES_CFG, "hpatches", ""), (ETH_CFG, "eth", "eth_")):
        cfg.clear()
        cfg.update(ExtractConfig.from_dict(study[name], what=f"{a.params}: extract.{name}").__dict__)
        overrides = {
            "scales": getattr(a, prefix + "scales"),
            "pyramid": getattr(a, prefix + "pyramid"),
            "rotations": getattr(a, prefix + "rotations"),
            "pyramid_sift_size": a.pyramid_sift_size,
        }
        for key, value in overrides.items():
            if value is not None:
                cfg[key] = value == "on" if key == "pyramid" else tuple(value) if isinstance(value, list) else value
        cfg.pop("sift_keypoints")
    print(json.dumps({"hpatches": HPATCHES_CFG, "eth": ETH_CFG}), file=sys.stderr)
    data, work = Path(a.data), Path(a.work)
    if not data.is_dir():
        raise SystemExit(
            f"{data}: real data folder not found (expected hpatches-oxford/ and megadepth-strecha/ "
            "there; pass --data, e.g. when this checkout is a scratch copy outside the workspace)"
        )
    work.mkdir(parents=True, exist_ok=True)
    model = load_model(a.weights, "cpu")
    if a.input_norm:
        model.config["input_norm"] = a.input_norm
    t0 = time.perf_counter()
    parts = {
        "hpatches": lambda: eval_hpatches(data / "hpatches-oxford", work, model),
        "warped": lambda: eval_hpatches(warped_sequences(data, work / "warped"), work, model, "warped"),
        "epipolar": lambda: epipolar_precision(data, work, model),
        "epipolar_night": lambda: epipolar_precision(data, work, model, night=True),
        "eth": lambda: eval_eth(data, work, model, eth_pipeline),
    }
    res = {"weights": str(a.weights), "settings": {"hpatches": HPATCHES_CFG, "eth": ETH_CFG}}
    for name in PARTS:
        if name in a.only and not (name == "eth" and a.no_eth):
            res[name] = parts[name]()
    res["seconds"] = round(time.perf_counter() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
