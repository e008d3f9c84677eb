"""Shared fixtures: a small demo world rendered once per test session, and the shared real data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

#: test modules that import an optional package at collection: pycolmap (directly or through the COLMAP-based
#: evaluations) and Hydra (DVC's composition). A bare CUDA machine (torch only, as benchmarks/speed/gpu_check.sh
#: expects) has neither: these modules are then left out, not collection errors.
NEEDS = {
    "pycolmap": (
        "test_aachen.py",
        "test_colmap.py",
        "test_demo_data.py",
        "test_eth.py",
        "test_eth_internet.py",
        "test_readers.py",
        "test_reconstruction.py",
        "test_photos.py",
    ),
    "hydra": ("test_config_composition.py",),
}
collect_ignore = [m for pkg, mods in NEEDS.items() if importlib.util.find_spec(pkg) is None for m in mods]

SHARED_DATA = Path(os.environ.get("POSFEAT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

SMALL_DEMO = dict(
    megadepth_scenes=3,
    megadepth_images=6,
    hpatches_sequences=2,
    eth_scenes=1,
    eth_images=6,
    aachen_db_images=8,
    aachen_day_queries=2,
    aachen_night_queries=1,
)
"""A demo world small enough for unit tests (about 10 s on 2 cores): 3 MegaDepth scenes (two of them
IMC-banned ids), 2 ``i_*`` + 2 ``v_*`` HPatches sequences, one ETH scene, one Aachen set."""


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo world (:data:`SMALL_DEMO`), rendered once per session; tests must not modify it."""
    from posfeat.demo import generate_demo
    from posfeat.trainset.manifest import write_metadata_manifest

    root = tmp_path_factory.mktemp("demo") / "demo"
    generate_demo(root, seed=0, **SMALL_DEMO)
    write_metadata_manifest(root / "megadepth", root / "megadepth_metadata.json")
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (small real data with ground truth); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA
