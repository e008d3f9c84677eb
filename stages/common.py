"""What every stage module shares: reading ``params.yaml``."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_params(path: str | Path = ROOT / "params.yaml") -> dict:
    """The study's parameters as a dict (the library never reads this file)."""
    with open(path) as f:
        return yaml.safe_load(f)
