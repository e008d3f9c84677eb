"""A trained PoSFeat model against SIFT on a real-data folder: the measurement behind ``posfeat eval-real``.

Three methods in every part: ``posfeat`` (its keypoints), ``posfeat_sift`` (PoSFeat descriptors on OpenCV SIFT
keypoints, the official ``use_sift: True``, from the same network pass) and ``sift``. The parts (:data:`PARTS`):

* ``hpatches``: every sequence of ``hpatches-oxford/`` (e.g. ``v_boat``: zoom and rotation), D2-Net protocol,
  mutual NN, MMA@1..10 and the MMA score, with the study's HPatches extraction settings (``extract.hpatches``).
* ``warped``: HPatches-layout viewpoint sequences made from the Strecha photographs by random camera turns and
  zooms (:func:`~posfeat.evaluation.real.data.warped_sequences`), the same protocol: a proxy for the HPatches
  ``v_*`` sequences that turn less than ``v_boat``.
* ``epipolar``: mutual-NN matches between consecutive images of every ``megadepth-strecha/<scene>``, scored by
  their symmetric epipolar distance under the exact cameras (precision at 1 and 3 px, matches per pair);
  ``epipolar_night``: the same with the second image of every pair through the demo world's night style
  (:func:`~posfeat.evaluation.real.data.night_images`), a stand-in for Aachen's night queries.
* ``eth``: every Strecha scene written as an ETH-layout scene and reconstructed with the study's ETH pipeline
  (``extract.eth`` for PoSFeat, ``eval.eth`` for matching, verification and mapping): registered images, 3D
  points, median rotation error against the ground truth.

The real-data folder's layout: :mod:`posfeat.evaluation.real.data`. Everything runs on the CPU. SIFT features do
not depend on the model: they are cached in the work folder by file name. PoSFeat features are extracted once per
:class:`RealCheck` (the day images of the two epipolar parts serve both) and never reused from an earlier run,
since the work folder outlives the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from posfeat.datasets.hpatches import list_sequences, load_sequence
from posfeat.datasets.images import list_images
from posfeat.datasets.megadepth import read_img_cam
from posfeat.evaluation.eth.config import ETHConfig
from posfeat.evaluation.real import PARTS
from posfeat.evaluation.real.data import aligned_dir, night_images, strecha_scenes, warped_sequences, write_eth_scene
from posfeat.extraction.config import ExtractConfig
from posfeat.io import DataError
from posfeat.settings import ParamError, param, seeded_settings

METHODS = ("posfeat", "posfeat_sift", "sift")
"""The methods every part measures."""
SUMMARY_KEYS = ("mma@1", "mma@3", "mma@10", "mma_score")
"""The HPatches summary figures of a method (rounded to 4 decimals)."""
ETH_KEYS = (
    "num_images",
    "num_reg_images",
    "num_sparse_points",
    "mean_track_length",
    "mean_reproj_error",
    "median_rotation_error_deg",
)
"""The statistics of an ETH-layout reconstruction kept in the results."""
HPATCHES_MAX_THRESHOLD = 15
"""MMA thresholds 1..15 px (D2-Net's protocol)."""


# ------------------------------------------------------------------------------------------------ settings
def eth_pipeline_config(params: Mapping, source: str = "params.yaml") -> ETHConfig:
    """The study's ETH pipeline (``eval.eth`` with the study's ``seed``) from ``params``, read from ``source``."""
    return ETHConfig.from_dict(seeded_settings(params, "eval.eth", source), what=f"{source}: eval.eth")


def _override_value(key: str, value: Any) -> Any:
    """An override as an extraction setting: ``pyramid`` ``'on'``/``'off'`` → bool, a list → a tuple."""
    if key == "pyramid":
        if isinstance(value, bool):
            return value
        if value not in ("on", "off"):
            raise ParamError(f"pyramid override = {value!r}: expected 'on' or 'off'")
        return value == "on"
    return tuple(value) if isinstance(value, list) else value


def _dataset_settings(params: Mapping, name: str, source: str, overrides: Mapping[str, Any]) -> dict:
    """``extract.<name>`` of ``params`` as a complete settings dict, the ``overrides`` not ``None`` in place of
    the study's values, checked, without ``sift_keypoints`` (each extraction sets it)."""
    what = f"{source}: extract.{name}"
    settings = dict(vars(ExtractConfig.from_dict(param(params, f"extract.{name}", Any, source=source), what=what)))
    for key, value in overrides.items():
        if value is not None:
            settings[key] = _override_value(key, value)
    ExtractConfig.from_dict(settings, what=f"{what} with the overrides")
    settings.pop("sift_keypoints")
    return settings


def extraction_settings(
    params: Mapping,
    source: str = "params.yaml",
    *,
    scales: Iterable[float] | None = None,
    pyramid: str | bool | None = None,
    rotations: Iterable[float] | None = None,
    eth_scales: Iterable[float] | None = None,
    eth_pyramid: str | bool | None = None,
    eth_rotations: Iterable[float] | None = None,
    pyramid_sift_size: float | None = None,
) -> dict[str, dict]:
    """PoSFeat's extraction settings ``{"hpatches": …, "eth": …}``: the study's ``extract.hpatches`` (HPatches,
    warped sequences, epipolar precision) and ``extract.eth`` (ETH scenes) of ``params`` (read from ``source``,
    named in errors), with ``scales``, ``pyramid`` (``'on'``/``'off'``) and ``rotations`` (``eth_…`` for the ETH
    scenes) and ``pyramid_sift_size`` (both) in place of the study's values where given."""
    own = {"scales": scales, "pyramid": pyramid, "rotations": rotations, "pyramid_sift_size": pyramid_sift_size}
    eth = {
        "scales": eth_scales,
        "pyramid": eth_pyramid,
        "rotations": eth_rotations,
        "pyramid_sift_size": pyramid_sift_size,
    }
    return {
        "hpatches": _dataset_settings(params, "hpatches", source, own),
        "eth": _dataset_settings(params, "eth", source, eth),
    }


# ------------------------------------------------------------------------------------------------ scores
def hpatches_summary(root: Path, features: Path, sequences: list[str]) -> dict:
    """One method's MMA on ``sequences`` of the HPatches-layout ``root``: :data:`SUMMARY_KEYS` over all pairs,
    matches per pair, and each pair's MMA@3."""
    from posfeat.evaluation.hpatches import evaluate_pairs, summarize

    raw = evaluate_pairs(root, features, sequences, HPATCHES_MAX_THRESHOLD, "cpu", progress=False)
    r = summarize(raw, HPATCHES_MAX_THRESHOLD)
    return {k: round(r["overall"][k], 4) for k in SUMMARY_KEYS} | {
        "matches_per_pair": r["matches_per_pair"],
        "mma@3_per_pair": [round(float(p[2]), 3) for p in raw.precision],
    }


def epipolar_scores(
    first: Path, second: Path, names: list[str], cams: Mapping, thresholds: Iterable[float] = (1.0, 3.0)
) -> dict:
    """Mutual-NN matches of every consecutive pair ``(a, b)`` of ``names``, ``a``'s features from the file
    ``first`` and ``b``'s from ``second``, scored by their symmetric epipolar distance under the cameras ``cams``:
    the mean over pairs of the fraction within each of ``thresholds`` px (0 for a pair without matches), and the
    mean number of matches. A necessary condition only: a wrong match along its epipolar line counts as right."""
    from posfeat.geometry import fundamental_from_poses, symmetric_epipolar_distance_np
    from posfeat.io import FeatureReader
    from posfeat.matching import match_descriptors

    thresholds = tuple(thresholds)
    prec, counts = [], []
    with FeatureReader(first) as r1, FeatureReader(second) as r2:
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
    return {
        **{f"precision@{t:g}": round(float(v), 4) for t, v in zip(thresholds, p)},
        "matches_per_pair": round(float(np.mean(counts)), 1),
    }


# ------------------------------------------------------------------------------------------------ the parts
@dataclass
class RealCheck:
    """One measurement of ``model`` on a real-data folder: the work folder (SIFT cache, derived test sets,
    feature files), PoSFeat's extraction settings for the HPatches-like parts and the ETH scenes (complete
    :class:`~posfeat.extraction.ExtractConfig` fields without ``sift_keypoints``), and the PoSFeat feature files
    written by this check (reused within it, never from an earlier one)."""

    model: Any
    work: Path
    hpatches_cfg: dict
    eth_cfg: dict
    made: set[Path] = field(default_factory=set)

    def sift_features(self, root: Path, names: list[str], out: Path, cfg: dict) -> Path:
        """OpenCV SIFT features of ``names`` under ``root`` in ``out``, reused when the file exists."""
        from posfeat.extraction import extract_dataset

        if not out.is_file():
            extract_dataset("sift", root, names, out, config=ExtractConfig(**cfg), device="cpu", progress=False)
        return out

    def posfeat_features(self, root: Path, names: list[str], stem: Path, cfg: dict) -> dict[str, Path]:
        """PoSFeat's keypoints and PoSFeat descriptors on SIFT keypoints of ``names``, from one network pass →
        ``{"posfeat": <stem>_posfeat.h5, "posfeat_sift": <stem>_posfeat_sift.h5}`` (once per check)."""
        from posfeat.extraction import extract_dataset

        out = {"posfeat": Path(f"{stem}_posfeat.h5"), "posfeat_sift": Path(f"{stem}_posfeat_sift.h5")}
        if not set(out.values()) <= self.made:
            extract_dataset(
                "posfeat",
                root,
                names,
                out["posfeat"],
                model=self.model,
                config=ExtractConfig(**cfg),
                device="cpu",
                progress=False,
                sift_out=out["posfeat_sift"],
            )
            self.made.update(out.values())
        return out

    def features(self, root: Path, names: list[str], stem: Path, cfg: dict) -> dict[str, Path]:
        """The feature file of every method (:data:`METHODS`) for ``names`` under ``root``: ``<stem>_<method>.h5``."""
        return {
            **self.posfeat_features(root, names, stem, cfg),
            "sift": self.sift_features(root, names, Path(f"{stem}_sift.h5"), cfg),
        }

    def hpatches(self, root: Path, tag: str = "hp") -> dict:
        """``{method: MMA summary}`` (:func:`hpatches_summary`) on every sequence under the HPatches-layout
        ``root``, the features in ``<work>/<tag>_<method>.h5``."""
        sequences = list_sequences(root, ())
        names = [im for s in sequences for im in load_sequence(root, s).images]
        files = self.features(root, names, self.work / tag, self.hpatches_cfg)
        return {method: hpatches_summary(root, path, sequences) for method, path in files.items()}

    def warped(self, data: Path) -> dict:
        """:meth:`hpatches` on the viewpoint sequences warped from the Strecha photographs of ``data``."""
        return self.hpatches(warped_sequences(data, self.work / "warped"), "warped")

    def epipolar(self, data: Path, night: bool = False, thresholds: Iterable[float] = (1.0, 3.0)) -> dict:
        """``{method: {scene: scores}}`` (:func:`epipolar_scores`) for every Strecha scene of ``data``; with
        ``night`` the second image of every pair is its synthetic night version."""
        out: dict = {}
        for md_scene in strecha_scenes(data):
            aligned = aligned_dir(md_scene)
            cams = read_img_cam(aligned / "img_cam.txt")
            names = sorted(cams)
            roots = {"day": aligned / "images"}
            if night:
                roots["night"] = night_images(aligned / "images", names, self.work / "night" / md_scene.name)
            per_look = {
                look: self.features(root, names, self.work / f"epi_{md_scene.name}_{look}", self.hpatches_cfg)
                for look, root in roots.items()
            }
            for method in METHODS:
                second = per_look["night" if night else "day"][method]
                scores = epipolar_scores(per_look["day"][method], second, names, cams, thresholds)
                out.setdefault(method, {})[md_scene.name] = scores
        return out

    def epipolar_night(self, data: Path) -> dict:
        """:meth:`epipolar` with the second image of every pair through the synthetic night."""
        return self.epipolar(data, night=True)

    def eth(self, data: Path, config: ETHConfig) -> dict:
        """``{method: {scene: statistics}}`` (:data:`ETH_KEYS`) of every Strecha scene of ``data`` written as an
        ETH-layout scene and reconstructed with the pipeline ``config``."""
        from posfeat.evaluation.eth.evaluate import evaluate_scene

        out: dict = {}
        for md_scene in strecha_scenes(data):
            scene = write_eth_scene(md_scene, self.work / "eth" / md_scene.name)
            names = list_images(scene / "images")
            files = self.features(scene / "images", names, self.work / f"eth_{md_scene.name}", self.eth_cfg)
            for method, f in files.items():
                workdir = self.work / "eth_work" / method / md_scene.name
                r = evaluate_scene(scene, f, workdir, config, device="cpu", progress=False)
                out.setdefault(method, {})[md_scene.name] = {k: r.stats.get(k) for k in ETH_KEYS}
        return out


def check_data_folder(data: Path) -> Path:
    """``data`` if it is a folder, else a :class:`~posfeat.io.DataError` saying what it should hold."""
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: real data folder not found (expected hpatches-oxford/ and megadepth-strecha/ there)")
    return data


def evaluate_real(
    weights: str | Path,
    data: str | Path,
    work: str | Path,
    settings: Mapping[str, dict],
    eth_config: ETHConfig | None = None,
    parts: Iterable[str] = PARTS,
    input_norm: str | None = None,
) -> dict:
    """Measure the PoSFeat checkpoint ``weights`` against SIFT on the real-data folder ``data`` (work folder
    ``work``), with the extraction settings ``settings`` (:func:`extraction_settings`) and the ETH pipeline
    ``eth_config`` (needed for the ``eth`` part); ``input_norm`` overrides the checkpoint's ``model.input_norm``.

    Returns ``{"weights", "settings": {"hpatches", "eth"}, <each part of parts, in PARTS order>, "seconds"}``.
    """
    from posfeat.extraction import load_model

    parts = set(parts)
    if parts - set(PARTS):
        raise DataError(f"unknown parts {sorted(parts - set(PARTS))} (known: {', '.join(PARTS)})")
    if "eth" in parts and eth_config is None:
        raise DataError("the eth part needs the ETH pipeline settings (eval.eth)")
    if input_norm not in (None, "imagenet", "standardize"):
        raise DataError(f"input_norm = {input_norm!r}: expected imagenet or standardize")
    data, work = check_data_folder(data), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    model = load_model(weights, "cpu")
    if input_norm:
        model.config["input_norm"] = input_norm
    check = RealCheck(model, work, dict(settings["hpatches"]), dict(settings["eth"]))
    t0 = time.perf_counter()
    runs = {
        "hpatches": lambda: check.hpatches(data / "hpatches-oxford"),
        "warped": lambda: check.warped(data),
        "epipolar": lambda: check.epipolar(data),
        "epipolar_night": lambda: check.epipolar_night(data),
        "eth": lambda: check.eth(data, eth_config),
    }
    res: dict = {"weights": str(weights), "settings": {"hpatches": check.hpatches_cfg, "eth": check.eth_cfg}}
    for name in PARTS:
        if name in parts:
            res[name] = runs[name]()
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res
