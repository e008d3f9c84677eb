"""Where the time of the ETH benchmark goes, per scene: import, matching, verification, mapping.

    python -m benchmarks.speed.bench_colmap                        # full-size demo ETH set rendered into /tmp
    python -m benchmarks.speed.bench_colmap --small                # the test fixture's ETH scene (6 views)
    python -m benchmarks.speed.bench_colmap --root data/demo/eth --features features/sift/eth.h5 --json out.json

Without ``--features``, SIFT features are extracted (OpenCV, ``--max-keypoints``) into the work folder,
with names ``<Scene>/images/<file>`` as the ``extract_*@eth`` stages write them. Per scene it prints the
seconds of each phase of :func:`posfeat.evaluation.eth.evaluate.evaluate_scene`, per pair for matching and
verification, and the reconstruction it got. Not a test: run it by hand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.speed.colmap_bench_args import colmap_bench_parser
from posfeat.datasets.eth import list_scene_images, list_scenes
from posfeat.evaluation.eth.evaluate import ETHConfig, evaluate_scene
from posfeat.extraction import ExtractConfig, extract_dataset

#: the test fixture's small ETH set (tests/conftest.py SMALL_DEMO)
SMALL = dict(eth_scenes=1, eth_images=6)


def demo_eth(out: Path, small: bool) -> Path:
    """Render only the ETH part of the demo world (the demo stage's default sizes, or the test fixture's)."""
    from posfeat.demo import DEFAULT_SIZES, write_eth

    cfg = {**DEFAULT_SIZES, **(SMALL if small else {})}
    root = out / "eth"
    if not root.is_dir():
        write_eth(root, 0, cfg["eth_scenes"], cfg["eth_images"], tuple(cfg["eth_size"]), cfg["jpeg_quality"])
    return root


def main(argv: list[str] | None = None) -> dict:
    ap = colmap_bench_parser(
        __doc__.splitlines()[0],
        "ETH",
        "posfeat_bench_colmap",
        20480,
        "the test fixture's small scene instead of the default demo",
    )
    ap.add_argument("--max-exhaustive-images", type=int, default=1600)
    a = ap.parse_args(argv)

    work = Path(a.workdir) / ("small" if a.small else "default")
    work.mkdir(parents=True, exist_ok=True)
    root = Path(a.root) if a.root else demo_eth(work, a.small)
    scenes = list_scenes(root)
    extract_s_per_image = None
    if a.features:
        features = Path(a.features)
    else:
        features = work / f"sift_{a.max_keypoints}.h5"
        if not features.is_file():
            names = [f"{s}/{n}" for s in scenes for n in list_scene_images(root / s)]
            s = extract_dataset(
                "sift", root, names, features, config=ExtractConfig(max_keypoints=a.max_keypoints), progress=False
            )
            extract_s_per_image = s["seconds"] / s["num_images"]
            print(f"SIFT: {s['keypoints_mean']:.0f} keypoints/image, {extract_s_per_image:.3f} s/image")
    cfg = ETHConfig(max_exhaustive_images=a.max_exhaustive_images)
    figures: dict = {"root": str(root), "features": str(features), "scenes": {}}
    if extract_s_per_image is not None:
        figures["sift_s_per_image"] = round(extract_s_per_image, 4)
    header = (
        f"{'scene':<12}{'images':>7}{'pairs':>7}{'import':>9}{'matching':>10}{'ms/pair':>9}"
        f"{'verify':>9}{'ms/pair':>9}{'mapping':>9}{'total':>9}{'reg':>5}{'points':>8}{'rot°':>7}"
    )
    print(header)
    for scene in scenes:
        t0 = time.perf_counter()
        r = evaluate_scene(root / scene, features, work / "run" / scene, cfg, device=a.device, progress=False)
        total = time.perf_counter() - t0
        s, t = r.stats, r.timings
        pairs = max(1, s["num_pairs"])
        matched = max(1, s["num_matched_pairs"])
        row = {
            "images": s["num_images"],
            "pairs": s["num_pairs"],
            "matched_pairs": s["num_matched_pairs"],
            "seconds": {k: round(v, 3) for k, v in t.items()},
            "total_s": round(total, 3),
            "matching_ms_per_pair": round(1000 * t.get("matching", 0.0) / pairs, 2),
            "verification_ms_per_pair": round(1000 * t.get("verification", 0.0) / matched, 2),
            "num_reg_images": s["num_reg_images"],
            "num_sparse_points": s["num_sparse_points"],
            "median_rotation_error_deg": s.get("median_rotation_error_deg"),
            "message": r.message,
        }
        figures["scenes"][scene] = row
        rot = row["median_rotation_error_deg"]
        print(
            f"{scene:<12}{row['images']:>7}{row['pairs']:>7}{t.get('import', 0):>9.3f}{t.get('matching', 0):>10.3f}"
            f"{row['matching_ms_per_pair']:>9.1f}{t.get('verification', 0):>9.3f}"
            f"{row['verification_ms_per_pair']:>9.1f}"
            f"{t.get('mapping', 0):>9.3f}{total:>9.3f}{row['num_reg_images']:>5}{row['num_sparse_points']:>8}"
            f"{'-' if rot is None else f'{rot:.2f}':>7}"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
