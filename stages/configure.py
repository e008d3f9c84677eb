"""Switch the study's scale: merge an override file (e.g. ``configs/paper.yaml``) into ``params.yaml``.

    python -m stages.configure configs/paper.yaml            # edit params.yaml in place (comments kept)
    python -m stages.configure configs/paper.yaml --dvc-args # print `-S key=value …` for `dvc exp run`

The override file has the same structure as ``params.yaml``; only the keys it names change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ruamel.yaml import YAML

from posfeat.entry import run_entry
from posfeat.io import DataError
from stages.common import ROOT, load_params


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _merge(dst, src: dict, where: str = "") -> None:
    for k, v in src.items():
        if k not in dst:
            raise DataError(f"override key {where}{k!r} does not exist in params.yaml")
        if isinstance(v, dict):
            _merge(dst[k], v, f"{where}{k}.")
        else:
            dst[k] = v


def dvc_args(overrides: dict) -> list[str]:
    """``-S key=value`` pairs for ``dvc exp run``: values in compact JSON/YAML flow syntax (``[640,480]``,
    ``null``), so that ``dvc exp run $(python -m stages.configure F --dvc-args)`` splits them correctly.
    A value with white space cannot pass through ``$(…)`` and is refused (use the in-place mode)."""
    args: list[str] = []
    for key, value in _flatten(overrides).items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if any(c.isspace() for c in text):
            raise DataError(f"override {key} = {value!r}: white space cannot go through "
                            "`dvc exp run $(… --dvc-args)`; merge the file into params.yaml instead")
        args += ["-S", f"{key}={text}"]
    return args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", help="YAML file with the keys to change")
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--dvc-args", action="store_true", help="print dvc exp run -S arguments instead of editing")
    args = p.parse_args(argv)
    yaml = YAML()
    yaml.preserve_quotes = True
    overrides = load_params(args.overrides)  # DataError: missing, not YAML, not a mapping
    if args.dvc_args:
        print(" ".join(dvc_args(overrides)))
        return 0
    params_path = Path(args.params)
    params = yaml.load(params_path.read_text())
    _merge(params, overrides)
    tmp = params_path.with_suffix(".yaml.tmp")
    with open(tmp, "w") as f:
        yaml.dump(params, f)
    tmp.replace(params_path)
    print(f"updated {params_path} with {len(_flatten(overrides))} values from {args.overrides}")
    return 0


if __name__ == "__main__":
    sys.exit(run_entry(main, prog="stages.configure"))
