"""How the cost grows with the number of images and pairs: the scale rehearsal.

Each measurement runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own.

    python -m benchmarks.speed.growth index --pairs 10000 50000 200000 500000
    python -m benchmarks.speed.growth eth --images 50 100 200 400
    python -m benchmarks.speed.growth aachen --db-images 125 250 500 1000
    python -m benchmarks.speed.growth retrieval --images 250 500 1000 2000 4000
    python -m benchmarks.speed.growth loader --workers 0 1 2
    python -m benchmarks.speed.growth plot

* ``index``: a synthetic MegaDepth metadata tree (scenes of 200 images and 5000 pairs each, small relative
  rotations, no image files) with the given total number of pairs: the ``prepare_megadepth`` pair index built
  (seconds, peak RSS), written (bytes on disk), and opened as the training set (``PairDataset``: seconds, RSS).
* ``eth``: an ETH-layout scene rendered by the demo (320×240 JPEGs, cameras on a 150° arc) with the given number of
  images, OpenCV SIFT (1024 keypoints), then the ETH pipeline (one thread) with exhaustive pairs and with
  retrieval pairs (10 neighbours): seconds and peak RSS per phase, seconds per pair of matching and verification,
  the database and feature file on disk, registered images and rotation error. Self-calibration and the mapper's
  structure-less fallback are off by default (``--self-calibration-rounds``, ``--structure-less-fallback``): the
  rounds repeat the mapping, and each fallback try is a fixed RANSAC of about 10 s, so both would hide how the
  mapping itself grows.
* ``aachen``: an Aachen-layout root rendered by the demo (320×240) with the given number of database images and a
  fixed 30 day and 10 night queries, OpenCV SIFT (1024 keypoints), then the localization pipeline (one thread):
  seconds and peak RSS per phase, the database and feature file on disk, pairs, 3D points, localized queries.
* ``retrieval``: the bag-of-words retrieval pairs (1024 words, 10 neighbours) over the given number of synthetic
  descriptor sets of 1024 × 128: seconds and peak RSS.
* ``loader``: the training loader alone at the paper's size (640×480 JPEG decode, resize, colour jitter 1, 1, 1,
  0.4, batch 8) over the demo's pair index (``data/prepared/megadepth.json``, run ``dvc repro prepare_megadepth``
  first), with 0, 1, 2, … worker processes: pairs per second after a warm-up.

A phase's peak RSS is the process's high-water mark while the phase runs: the kernel's mark is reset
(``/proc/self/clear_refs``) when the phase starts, so it includes what earlier phases still hold (``rss_start``).

Results go to ``benchmarks/results/growth-<part>.json`` (machine, date, commit in each); ``plot`` draws
``docs/growth.png``, one line per phase, and fits each phase's growth exponent (the log-log slope of its seconds
against the count: 1 linear, 2 quadratic) into ``growth-fit.json``. Not a test: run it by hand on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MB."""
    with open("/proc/self/status") as f:
        return round(next(int(ln.split()[1]) for ln in f if ln.startswith(field + ":")) / 1024, 1)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``: unlike ``ru_maxrss``, not inherited from the parent
    that started it)."""
    return _status_mb("VmHWM")


PHASE_MEMORY: dict[str, dict[str, float]] = {}


def _track_phase_memory() -> None:
    """Make every :class:`posfeat.sfm.steps.PhaseTimer` phase also record, in :data:`PHASE_MEMORY`, the RSS
    at its start and its peak RSS (MB): the kernel's high-water mark is reset when the phase starts."""
    from posfeat.sfm import steps

    timed = steps.PhaseTimer.__call__

    @contextlib.contextmanager
    def call(self, phase: str):
        Path("/proc/self/clear_refs").write_text("5")
        start = _status_mb("VmRSS")
        with timed(self, phase):
            yield
        seen = PHASE_MEMORY.setdefault(phase, {"rss_start_mb": start, "rss_peak_mb": 0.0})
        seen["rss_peak_mb"] = max(seen["rss_peak_mb"], _peak_rss_mb())

    steps.PhaseTimer.__call__ = call


MATCH_READS: list[tuple[int, int]] = []


def _count_descriptor_reads() -> None:
    """Record, in :data:`MATCH_READS`, the descriptor sets each matching call reads from the feature file, and
    what it would read taking the pairs in the order given (the matcher before its tiles)."""
    from posfeat.sfm import matching

    match = matching.match_and_import

    def counted(db, features, keys, ids, pairs, **kwargs):
        pairs = list(pairs)
        stats = match(db, features, keys, ids, pairs, **kwargs)
        given = matching.lru_reads(pairs, kwargs.get("cache_size", 64))
        MATCH_READS.append((stats.descriptor_reads, given))
        return stats

    matching.match_and_import = counted


def _extract_sift(image_dir: Path, names: list[str], out: Path) -> float:
    """OpenCV SIFT (1024 keypoints) of ``names`` into ``out``; returns the seconds it took."""
    from posfeat.extraction import ExtractConfig, extract_dataset

    t0 = time.perf_counter()
    extract_dataset("sift", image_dir, names, out, config=ExtractConfig(max_keypoints=1024), device="cpu",
                    progress=False)  # fmt: skip
    return round(time.perf_counter() - t0, 2)


def _du(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ index
def _write_metadata_tree(root: Path, n_pairs: int, seed: int = 0) -> None:
    """Scenes of 200 images and up to 5000 pairs each (small random rotations), ``n_pairs`` pairs in all."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    k = 0
    while n_pairs > 0:
        folder = root / f"{k:04d}" / "dense0" / "aligned"
        (folder / "images").mkdir(parents=True)
        rows = ["# name w h fx fy cx cy R t"]
        for i in range(200):
            R = cv2.Rodrigues(rng.normal(0, 0.2, 3))[0]
            t = rng.normal(0, 1, 3)
            rows.append(" ".join([f"{i:04d}.jpg", "640", "480", "500", "500", "320", "240"]
                                 + [f"{v:.6f}" for v in R.ravel()] + [f"{v:.6f}" for v in t]))  # fmt: skip
        (folder / "img_cam.txt").write_text("\n".join(rows) + "\n")
        m = min(5000, n_pairs)
        ii, jj = np.triu_indices(200, 1)
        pick = rng.choice(len(ii), m, replace=False)
        (folder / "pairs.txt").write_text("".join(f"{ii[p]:04d}.jpg {jj[p]:04d}.jpg\n" for p in pick))
        n_pairs -= m
        k += 1


def measure_index(n_pairs: int) -> dict:
    """Build, write and open the pair index of a synthetic tree with ``n_pairs`` pairs (this process)."""
    from posfeat.io import write_json
    from posfeat.trainset.prepare import prepare_megadepth

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "md"
        _write_metadata_tree(root, n_pairs)
        rss0 = _peak_rss_mb()
        t0 = time.perf_counter()
        index, report = prepare_megadepth(root, banned_scenes=(), val_fraction=0.0, check_images=False)
        t1 = time.perf_counter()
        write_json(Path(tmp) / "index.json", index)
        t2 = time.perf_counter()
        opened = _child("open", str(Path(tmp) / "index.json"))  # in a fresh process: its own peak memory
        return {
            "pairs": report["pairs_kept"],
            "images": report["images"],
            "build_s": round(t1 - t0, 2),
            "write_s": round(t2 - t1, 2),
            "index_bytes": _du(Path(tmp) / "index.json"),
            "rss_before_mb": rss0,
            "rss_build_mb": _peak_rss_mb(),
            **opened,
        }


def measure_open(path: str) -> dict:
    """Open a pair index as the training set (this process): seconds, peak RSS, RSS held after opening."""
    import gc

    from posfeat.trainset.pairs import PairDataset

    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    ds = PairDataset(path)
    t1 = time.perf_counter()
    gc.collect()
    rss_now = _status_mb("VmRSS")
    return {"open_s": round(t1 - t0, 2), "rss_open_before_mb": rss0, "rss_open_peak_mb": _peak_rss_mb(),
            "rss_open_held_mb": round(rss_now, 1), "dataset_pairs": len(ds)}  # fmt: skip


# ------------------------------------------------------------------------------------------ eth
def measure_eth(n_images: int, pairs: str, self_calibration_rounds: int = 0, fallback: bool = False) -> dict:
    """Render an ETH scene of ``n_images``, extract SIFT, run the ETH pipeline with ``pairs`` (this process)."""
    from posfeat.demo.eth import write_eth_scene
    from posfeat.evaluation.eth.evaluate import ETHConfig, evaluate_scene

    _track_phase_memory()
    _count_descriptor_reads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "eth"
        root.mkdir()
        t0 = time.perf_counter()
        scene_name, _ = write_eth_scene(root, 0, 0, n_images, (320, 240), 92)
        t_render = round(time.perf_counter() - t0, 2)
        scene = root / scene_name
        names = sorted(p.name for p in (scene / "images").iterdir())
        feats = Path(tmp) / "sift.h5"
        t_extract = _extract_sift(scene / "images", names, feats)
        rss0 = _status_mb("VmRSS")
        cfg = ETHConfig(num_threads=1, max_exhaustive_images=None if pairs == "exhaustive" else 1,
                        retrieval_neighbors=10, self_calibration_rounds=self_calibration_rounds,
                        structure_less_fallback=fallback)  # fmt: skip
        res = evaluate_scene(scene, feats, Path(tmp) / "work", cfg, device="cpu", progress=False)
        st = res.stats
        return {
            "images": n_images,
            "pairs_kind": pairs,
            "pairs": st["num_pairs"],
            "verified_pairs": st["num_inlier_pairs"],
            "self_calibration_rounds": self_calibration_rounds,
            "structure_less_fallback": fallback,
            "mapping_attempts": len(st["mapping"]["attempts"]),
            "mapping_attempt_s": [a["seconds"] for a in st["mapping"]["attempts"]],
            "render_s": t_render,
            "extract_s": t_extract,
            "phases_s": res.timings,
            "phases_memory_mb": dict(PHASE_MEMORY),
            "matching_s_per_pair": round(res.timings.get("matching", 0) / max(st["num_pairs"], 1), 5),
            "descriptor_reads": sum(r for r, _ in MATCH_READS),
            "descriptor_reads_given_order": sum(r for _, r in MATCH_READS),
            "verification_s_per_pair": round(res.timings.get("verification", 0) / max(st["num_matched_pairs"], 1), 5),
            "database_bytes": _du(Path(tmp) / "work" / "database.db"),
            "features_bytes": _du(feats),
            "rss_before_mb": rss0,
            "rss_peak_mb": max(m["rss_peak_mb"] for m in PHASE_MEMORY.values()),
            "registered": st["num_reg_images"],
            "rotation_error_deg": st.get("median_rotation_error_deg"),
        }


# ------------------------------------------------------------------------------------------ aachen
def measure_aachen(n_db: int, n_day: int = 30, n_night: int = 10) -> dict:
    """Render an Aachen root with ``n_db`` database images, extract SIFT, localize its queries (this process)."""
    from posfeat.demo.aachen import write_aachen
    from posfeat.evaluation.aachen.evaluate import evaluate_aachen

    _track_phase_memory()
    _count_descriptor_reads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "aachen"
        t0 = time.perf_counter()
        written = write_aachen(root, 0, n_db, n_day, n_night, (320, 240), 92)
        t_render = round(time.perf_counter() - t0, 2)
        up = root / "images" / "images_upright"
        names = sorted(str(p.relative_to(up)) for p in up.rglob("*.jpg"))
        feats = Path(tmp) / "sift.h5"
        t_extract = _extract_sift(up, names, feats)
        rss0 = _status_mb("VmRSS")
        res = evaluate_aachen(root, feats, Path(tmp) / "work", device="cpu", progress=False)
        st = res.stats
        return {
            "db_images": n_db,
            "queries": st["queries"],
            "db_pairs": st["db_pairs"],
            "query_pairs": st["query_pairs"],
            "points3D": st["points3D"],
            "written_points3D": written["points3D"],
            "localized": sum(q.localized for q in res.queries),
            "descriptor_reads": sum(r for r, _ in MATCH_READS),
            "descriptor_reads_given_order": sum(r for _, r in MATCH_READS),
            "recall": res.metrics,
            "render_s": t_render,
            "extract_s": t_extract,
            "phases_s": res.timings,
            "phases_memory_mb": dict(PHASE_MEMORY),
            "database_bytes": _du(Path(tmp) / "work" / "database.db"),
            "features_bytes": _du(feats),
            "rss_before_mb": rss0,
            "rss_peak_mb": max(m["rss_peak_mb"] for m in PHASE_MEMORY.values()),
        }


# ------------------------------------------------------------------------------------------ retrieval
def measure_retrieval(n_images: int, keypoints: int = 1024, k: int = 10) -> dict:
    """Bag-of-words retrieval pairs over ``n_images`` synthetic descriptor sets (``keypoints`` × 128, unit rows;
    generated per image from its index, none held) with 1024 words (this process): seconds and peak RSS."""
    import numpy as np

    from posfeat.sfm.retrieval import bow_descriptors, nearest_neighbour_pairs

    names = [f"{i:05d}" for i in range(n_images)]

    def descriptors(name: str) -> np.ndarray:
        d = np.random.default_rng(int(name)).standard_normal((keypoints, 128), dtype=np.float32)
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    Path("/proc/self/clear_refs").write_text("5")
    rss0 = _status_mb("VmRSS")
    t0 = time.perf_counter()
    g = bow_descriptors(names, descriptors, 1024)
    t1 = time.perf_counter()
    pairs = nearest_neighbour_pairs(names, g, k)
    t2 = time.perf_counter()
    return {"images": n_images, "keypoints": keypoints, "pairs": len(pairs), "bow_s": round(t1 - t0, 2),
            "neighbours_s": round(t2 - t1, 2), "rss_before_mb": rss0, "rss_peak_mb": _peak_rss_mb()}  # fmt: skip


# ------------------------------------------------------------------------------------------ loader
def measure_loader(workers: int, batches: int = 12, warmup: int = 3) -> dict:
    """Pairs per second of the stage-1 training loader at 640×480 with ``workers`` processes (this process)."""
    import torch
    from torch.utils.data import DataLoader

    from posfeat.trainset.pairs import PairDataset

    torch.set_num_threads(1)
    ds = PairDataset(ROOT / "data" / "prepared" / "megadepth.json", image_size=(640, 480),
                     color_jitter=(1.0, 1.0, 1.0, 0.4), seed=0)  # fmt: skip
    order = [i % len(ds) for i in range((batches + warmup) * 8)]
    dl = DataLoader(ds, batch_size=8, sampler=order, num_workers=workers, persistent_workers=workers > 0)
    it = iter(dl)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    return {"workers": workers, "batch": 8, "size": [640, 480], "pairs_per_s": round(batches * 8 / dt, 2),
            "s_per_batch": round(dt / batches, 3), "rss_main_mb": _peak_rss_mb()}  # fmt: skip


# ------------------------------------------------------------------------------------------ driver
def _child(part: str, arg: str, *extra: str) -> dict:
    """Run one measurement in a fresh process and return its JSON."""
    cmd = [sys.executable, "-m", __spec__.name, "_one", part, arg, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"{part} {arg}: failed\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _header() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.node()}",
            "date": time.strftime("%Y-%m-%d"), "commit": commit.stdout.strip()}  # fmt: skip


def growth_exponent(x: list[float], y: list[float]) -> float | None:
    """The slope of ``log y`` against ``log x`` (least squares): 1 is linear growth, 2 quadratic; None for fewer
    than two positive points."""
    import numpy as np

    pts = [(a, b) for a, b in zip(x, y) if a > 0 and b and b > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return round(float(np.polyfit(lx, ly, 1)[0]), 2)


def _series() -> list[tuple[str, str, list[dict]]]:
    """``(title, count key, runs)`` of each measured series (the files present)."""
    out = []
    if (RESULTS / "growth-eth.json").exists():
        eth = json.loads((RESULTS / "growth-eth.json").read_text())["runs"]
        for pk in ("exhaustive", "retrieval"):
            runs = [r for r in eth if r["pairs_kind"] == pk]
            if runs:
                out.append((f"ETH, {pk} pairs", "images", runs))
    if (RESULTS / "growth-aachen.json").exists():
        out.append(
            ("Aachen, 40 queries", "db_images", json.loads((RESULTS / "growth-aachen.json").read_text())["runs"])
        )
    return out


def fit() -> dict:
    """Growth exponents of every phase's seconds and of the peak RSS above the start, per series; written to
    ``benchmarks/results/growth-fit.json``."""
    fits = {}
    for title, key, runs in _series():
        x = [r[key] for r in runs]
        pairs = [r.get("pairs") or (r.get("db_pairs", 0) + r.get("query_pairs", 0)) for r in runs]
        phases = {ph for r in runs for ph in r["phases_s"]}
        fits[title] = {
            "count": key,
            "counts": x,
            "pairs": pairs,
            "pairs_exponent": growth_exponent(x, pairs),
            "seconds_exponent": {
                ph: growth_exponent(x, [r["phases_s"].get(ph) for r in runs]) for ph in sorted(phases)
            },
            "seconds_vs_pairs_exponent": {  # 1: the same cost per pair at every count
                ph: growth_exponent(pairs, [r["phases_s"].get(ph) for r in runs])
                for ph in sorted(phases)
                if ph.startswith("matching") or ph == "verification"
            },
            "memory_exponent": growth_exponent(x, [r["rss_peak_mb"] - r["rss_before_mb"] for r in runs]),
        }
    (RESULTS / "growth-fit.json").write_text(json.dumps({**_header(), "fits": fits}, indent=1) + "\n")
    return fits


def plot() -> Path:
    """``docs/growth.png``: seconds per phase (solid) and the peak RSS above the start (dashed) against the count,
    one line per phase, on log-log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series()
    fig, axes = plt.subplots(1, 1 + len(series), figsize=(5 * (1 + len(series)), 4.2))
    idx = json.loads((RESULTS / "growth-index.json").read_text())["runs"]
    ax = axes[0]
    x = [r["pairs"] for r in idx]
    for key in ("build_s", "write_s", "open_s"):
        ax.plot(x, [r[key] for r in idx], "o-", label=key[:-2])
    ax2 = ax.twinx()
    ax2.plot(x, [r["rss_build_mb"] for r in idx], "k--", label="peak RSS, build (MB)")
    ax2.plot(x, [r["rss_open_held_mb"] for r in idx], "k:", label="RSS held, training set (MB)")
    ax.set(xlabel="training pairs", ylabel="seconds", title="MegaDepth pair index", xscale="log", yscale="log")
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="lower right", fontsize=7)
    for ax, (title, key, runs) in zip(axes[1:], series):
        x = [r[key] for r in runs]
        for ph in runs[-1]["phases_s"]:
            ax.plot(x, [max(r["phases_s"].get(ph, 0), 1e-3) for r in runs], "o-", label=ph)
        ax2 = ax.twinx()
        ax2.plot(x, [r["rss_peak_mb"] - r["rss_before_mb"] for r in runs], "k--", label="peak RSS above start (MB)")
        ax.set(xlabel=key.replace("_", " "), ylabel="seconds", title=title, xscale="log", yscale="log")
        ax.legend(loc="upper left", fontsize=7)
        ax2.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    out = ROOT / "docs" / "growth.png"
    fig.savefig(out, dpi=110)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        part, arg = sys.argv[2], sys.argv[3]
        if part == "index":
            r = measure_index(int(arg))
        elif part == "open":
            r = measure_open(arg)
        elif part == "eth":
            r = measure_eth(int(arg), sys.argv[4], int(sys.argv[5]), sys.argv[6] == "1")
        elif part == "aachen":
            r = measure_aachen(int(arg))
        elif part == "retrieval":
            r = measure_retrieval(int(arg))
        else:
            r = measure_loader(int(arg))
        print(json.dumps(r))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["index", "eth", "aachen", "retrieval", "loader", "plot"])  # plot: also the fit
    ap.add_argument("--pairs", type=int, nargs="+", default=[10000, 50000, 200000, 500000])
    ap.add_argument("--images", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--pair-kinds", nargs="+", choices=["exhaustive", "retrieval"], default=["exhaustive", "retrieval"])
    ap.add_argument("--self-calibration-rounds", type=int, default=0, help="eth: rounds after the mapper (default 0)")
    ap.add_argument("--structure-less-fallback", action="store_true", help="eth: the mapper's 2D-2D fallback on")
    ap.add_argument("--db-images", type=int, nargs="+", default=[125, 250, 500, 1000])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/growth-<part>.json)")
    args = ap.parse_args()
    if args.part == "plot":
        print(json.dumps(fit(), indent=1))
        print(plot())
        return
    runs = []
    if args.part == "index":
        todo = [(str(n),) for n in args.pairs]
    elif args.part == "eth":
        opts = (str(args.self_calibration_rounds), str(int(args.structure_less_fallback)))
        todo = [(str(n), kind, *opts) for kind in args.pair_kinds for n in args.images]
    elif args.part == "aachen":
        todo = [(str(n),) for n in args.db_images]
    elif args.part == "retrieval":
        todo = [(str(n),) for n in args.images]
    else:
        todo = [(str(n),) for n in args.workers]
    for arg, *extra in todo:
        runs.append(_child(args.part, arg, *extra))
        print(json.dumps(runs[-1]), flush=True)
    out = args.out or RESULTS / f"growth-{args.part}.json"
    out.write_text(json.dumps({**_header(), "runs": runs}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
