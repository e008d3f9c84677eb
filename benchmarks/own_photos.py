"""Train the study's recipe on a photo training set and measure the model on real photographs.

    python -m posfeat photos --images /data/my_photos --out /tmp/own/md --manifest /tmp/own/md_metadata.json
    python benchmarks/own_photos.py --megadepth /tmp/own/md --work /tmp/own_daisy                   # the demo recipe
    python benchmarks/own_photos.py --megadepth data/demo/megadepth --work /tmp/demo_small -S model.encoder=small

It runs the study's own stages (``prepare_megadepth``, ``train_desc``, ``train_kp``) with ``params.yaml`` and the
given overrides, in the scratch folder ``--work`` (models, index, metrics there), then
``benchmarks/eval_real.py`` on the trained model (``--eval-args`` are passed on). The same run inside the study:
``dvc exp run -S data=photos -S photos.sources.own=/data/my_photos [-S …]``, then ``eval_real.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posfeat.trainset.manifest import write_metadata_manifest  # noqa: E402
from stages import prepare_megadepth, train_desc, train_kp  # noqa: E402
from stages.common import load_params  # noqa: E402


def override(params: dict, assignment: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into ``params``."""
    key, value = assignment.split("=", 1)
    node = params
    *path, last = key.split(".")
    for k in path:
        node = node[k]
    node[last] = yaml.safe_load(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megadepth", required=True, help="MegaDepth-layout training root (posfeat photos --out)")
    ap.add_argument("--work", required=True, help="scratch folder: index, models, metrics")
    ap.add_argument("-S", dest="sets", action="append", default=[], help="params override key=value (as dvc exp -S)")
    ap.add_argument("--out", help="eval_real.py results JSON (default: <work>/real.json)")
    ap.add_argument("--eval-args", default="--no-eth", help="more eval_real.py arguments")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    params = load_params()
    for s in args.sets:
        override(params, s)
    md = Path(args.megadepth).resolve()
    params["datasets"]["megadepth"] = str(md)
    params["datasets"]["megadepth_metadata"] = str(work / "md_metadata.json")
    write_metadata_manifest(md, work / "md_metadata.json")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    prepare_megadepth.main(params, base_dir=work)
    train_desc.main(params, base_dir=work, progress=False)
    train_kp.main(params, base_dir=work, progress=False)
    out = args.out or str(work / "real.json")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "eval_real.py"),
            "--weights",
            str(work / "models" / "posfeat.pt"),
            "--params",
            str(work / "params.yaml"),
            "--out",
            out,
            *args.eval_args.split(),
        ],
        check=True,
    )


if __name__ == "__main__":
    main()
