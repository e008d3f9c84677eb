"""Where the time of the Aachen localization goes: matching, verification, triangulation, localization.

    python -m benchmarks.speed.bench_aachen                       # full-size demo Aachen set rendered into /tmp
    python -m benchmarks.speed.bench_aachen --root data/demo/aachen --features features/sift/aachen.h5
    python -m benchmarks.speed.bench_aachen --small --max-keypoints 2048 --json out.json

Without ``--features``, SIFT features are extracted (OpenCV, ``--max-keypoints``) into the work folder.
The per-query figures divide each phase by the number of queries (the db–db matching, the verification
of all pairs and the triangulation are shared by all queries); "query matching" counts only the
query–db pairs and "localization" is measured per query. Not a test: run it by hand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.speed.colmap_bench_args import colmap_bench_parser
from posfeat.datasets.aachen_layout import AachenLayout
from posfeat.datasets.images import list_images
from posfeat.evaluation.aachen.evaluate import AachenConfig, evaluate_aachen
from posfeat.evaluation.aachen.results import format_metrics
from posfeat.extraction import ExtractConfig, extract_dataset

#: the test fixture's small Aachen set (tests/conftest.py SMALL_DEMO)
SMALL = dict(aachen_db_images=8, aachen_day_queries=2, aachen_night_queries=1)


def demo_aachen(out: Path, small: bool) -> Path:
    """Render only the Aachen part of the demo world (default sizes, or the test fixture's)."""
    from posfeat.demo import DEFAULT_SIZES, write_aachen

    cfg = {**DEFAULT_SIZES, **(SMALL if small else {})}
    root = out / "aachen"
    if not root.is_dir():
        write_aachen(
            root,
            0,
            cfg["aachen_db_images"],
            cfg["aachen_day_queries"],
            cfg["aachen_night_queries"],
            tuple(cfg["aachen_size"]),
            cfg["jpeg_quality"],
        )
    return root


def main(argv: list[str] | None = None) -> dict:
    ap = colmap_bench_parser(
        __doc__.splitlines()[0],
        "Aachen",
        "posfeat_bench_aachen",
        8192,
        "the test fixture's small set instead of the default demo",
    )
    ap.add_argument("--verification-max-trials", type=int, default=10000)
    a = ap.parse_args(argv)

    work = Path(a.workdir) / ("small" if a.small else "default")
    work.mkdir(parents=True, exist_ok=True)
    root = Path(a.root) if a.root else demo_aachen(work, a.small)
    layout = AachenLayout.detect(root)
    t_extract = None
    if a.features:
        features = Path(a.features)
    else:
        features = work / f"sift_{a.max_keypoints}.h5"
        if not features.is_file():
            names = list_images(layout.image_dir)
            s = extract_dataset(
                "sift",
                layout.image_dir,
                names,
                features,
                config=ExtractConfig(max_keypoints=a.max_keypoints),
                progress=False,
            )
            t_extract = s["seconds"] / s["num_images"]
    cfg = AachenConfig(verification_max_trials=a.verification_max_trials)
    t0 = time.perf_counter()
    r = evaluate_aachen(root, features, work / "run", cfg, device=a.device, progress=False)
    total = time.perf_counter() - t0
    n = max(1, len(r.queries))
    t = r.timings
    phases = {  # label → seconds in total
        "matching (query-db pairs)": t["matching_query"],
        "matching (db-db pairs, shared)": t["matching_db"],
        "verification (all pairs, shared)": t["verification"],
        "triangulation (shared)": t["triangulation"],
        "localization": t["localization"],
        "load + import (shared)": t["load"] + t["import"],
    }
    per_query = {k: v / n for k, v in phases.items()}
    figures = {
        "root": str(root),
        "features": str(features),
        "queries": len(r.queries),
        "stats": {k: v for k, v in r.stats.items() if k != "config"},
        "seconds_total": round(total, 3),
        "seconds_per_phase": t,
        "seconds_per_query": {k: round(v, 4) for k, v in per_query.items()},
        "pose_estimation_ms_per_query": round(1e3 * sum(q.seconds for q in r.queries) / n, 3),
        "sift_seconds_per_image": t_extract,
        "metrics": r.metrics,
    }
    print(
        f"{root}: {len(r.queries)} queries, {r.stats['reference_images']} reference images, "
        f"{r.stats['db_pairs']} db-db + {r.stats['query_pairs']} query-db pairs, {r.stats['points3D']} points"
    )
    for k, v in phases.items():
        print(f"  {k:<36}{1e3 * v / n:10.1f} ms/query   ({v:.3f} s total)")
    print(f"  {'total':<36}{1e3 * total / n:10.1f} ms/query   ({total:.3f} s total)")
    print(format_metrics({"sift": r.metrics}))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
