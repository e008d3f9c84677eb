"""The demo world's orchestration: its default sizes, the independent work items (one per scene or
sequence, each on its own random stream), :func:`generate_demo` that renders them in worker processes,
:func:`tree_digest` (a determinism check) and the ``python -m posfeat demo`` command line."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from posfeat.demo import portable
from posfeat.demo.aachen import write_aachen
from posfeat.demo.eth import write_eth_scene
from posfeat.demo.hpatches import write_hpatches_i, write_hpatches_v
from posfeat.demo.megadepth import write_megadepth_scene
from posfeat.utils import get_logger

logger = get_logger(__name__)


DEFAULT_SIZES: dict = {
    "megadepth_scenes": 8,
    "megadepth_images": 12,
    "hpatches_sequences": 8,
    "eth_scenes": 2,
    "eth_images": 12,
    "aachen_db_images": 24,
    "aachen_day_queries": 6,
    "aachen_night_queries": 4,
    "megadepth_size": (640, 480),
    "hpatches_size": (480, 352),
    "eth_size": (640, 480),
    "aachen_size": (640, 480),
    "min_covisibility": 0.1,
    "jpeg_quality": 92,
}


def _demo_tasks(cfg: dict) -> list[tuple[str, int]]:
    """The independent work items of a demo world, biggest first (for load balancing)."""
    tasks = [("aachen", 0)]
    tasks += [("megadepth", k) for k in range(cfg["megadepth_scenes"])]
    tasks += [("eth", k) for k in range(cfg["eth_scenes"])]
    tasks += [("hpatches_i", s) for s in range(cfg["hpatches_sequences"])]
    tasks += [("hpatches_v", s) for s in range(cfg["hpatches_sequences"])]
    return tasks


def _run_task(out: Path, seed: int, cfg: dict, kind: str, index: int):
    """Render one work item of :func:`_demo_tasks` (each has its own random stream: the order is free)."""
    if kind == "megadepth":
        return write_megadepth_scene(
            out / "megadepth",
            seed,
            index,
            cfg["megadepth_images"],
            tuple(cfg["megadepth_size"]),
            cfg["min_covisibility"],
            cfg["jpeg_quality"],
        )
    if kind == "hpatches_i":
        return write_hpatches_i(out / "hpatches", seed, index, tuple(cfg["hpatches_size"]))
    if kind == "hpatches_v":
        return write_hpatches_v(out / "hpatches", seed, index, tuple(cfg["hpatches_size"]))
    if kind == "eth":
        return write_eth_scene(
            out / "eth",
            seed,
            index,
            cfg["eth_images"],
            tuple(cfg["eth_size"]),
            cfg["jpeg_quality"],
        )
    if kind == "aachen":
        return write_aachen(
            out / "aachen",
            seed,
            cfg["aachen_db_images"],
            cfg["aachen_day_queries"],
            cfg["aachen_night_queries"],
            tuple(cfg["aachen_size"]),
            cfg["jpeg_quality"],
        )
    raise ValueError(f"unknown demo task {kind!r}")


def generate_demo(out_dir: str | os.PathLike, seed: int = 0, workers: int | None = None, **sizes) -> dict:
    """Render the demo world into ``out_dir/{megadepth,hpatches,aachen,eth}`` (``out_dir`` must not exist
    or be empty). Deterministic for a seed, whatever the number of workers.

    Args:
        out_dir: output folder.
        seed: world seed.
        workers: processes rendering scenes in parallel (default: the CPU count, at most 8). Every scene has
            its own random stream, so the files do not depend on it; the processes render on the baseline
            code paths of numpy and OpenCV (:mod:`posfeat.demo.portable`), so they do not depend on
            the CPU either.
        **sizes: overrides of :data:`DEFAULT_SIZES` (counts, ``*_size`` ``(W, H)`` image sizes,
            ``min_covisibility`` for MegaDepth pairs, ``jpeg_quality``).

    Returns:
        A summary dict (counts per dataset, ``seconds``, ``bytes``, the workers' ``code_paths``).
    """
    unknown = set(sizes) - set(DEFAULT_SIZES)
    if unknown:
        raise ValueError(f"unknown demo parameters: {sorted(unknown)} (known: {sorted(DEFAULT_SIZES)})")
    cfg = {**DEFAULT_SIZES, **sizes}
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output folder exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    for d in ("megadepth", "hpatches", "eth"):
        (out / d).mkdir()
    t0 = time.perf_counter()
    tasks = _demo_tasks(cfg)
    workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
    workers = max(1, min(workers, len(tasks)))
    results: dict[tuple[str, int], object] = {}
    # spawned processes (never fork: the parent may hold torch's thread pools, and numpy reads its CPU switch
    # at import) on the code paths every CPU of the architecture has (posfeat.demo.portable)
    ctx = multiprocessing.get_context("spawn")
    with tqdm(total=len(tasks), desc="demo world", unit="scene") as bar, portable.baseline_environment():
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=portable.init_worker) as pool:
            code_paths = pool.submit(portable.worker_code_paths).result()
            futures = {pool.submit(_run_task, out, seed, cfg, *task): task for task in tasks}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
    summary = {"seed": int(seed), "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}
    summary["megadepth"] = {"scenes": dict(results[("megadepth", k)] for k in range(cfg["megadepth_scenes"]))}
    summary["hpatches"] = {
        kind: [results[(f"hpatches_{kind}", s)] for s in range(cfg["hpatches_sequences"])] for kind in ("i", "v")
    }
    summary["eth"] = dict(results[("eth", k)] for k in range(cfg["eth_scenes"]))
    summary["aachen"] = results[("aachen", 0)]
    summary["workers"] = workers
    summary["code_paths"] = code_paths
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["bytes"] = int(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))
    return summary


def tree_digest(root: str | os.PathLike) -> str:
    """SHA-256 over the relative paths and contents of every file under ``root`` (a determinism check)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
