"""Train the study's recipe on a photo training set and measure the model on real photographs.

    python -m posfeat photos --images /data/my_photos --out /tmp/own/md --manifest /tmp/own/md_metadata.json
    python -m benchmarks.experiments.own_photos --megadepth /tmp/own/md --work /tmp/own_daisy  # the demo recipe
    python -m benchmarks.experiments.own_photos --megadepth data/demo/megadepth --work /tmp/demo_small \
        -S model.encoder=small

It runs the study's own stages (``prepare_megadepth``, ``train_desc``, ``train_kp``) with ``params.yaml`` and the
given overrides, in the scratch folder ``--work`` (models, index, metrics there), then
``posfeat eval-real`` on the trained model (``--data``, ``--eval-args`` are passed on). The same run inside the
study: ``dvc exp run -S data=photos -S photos.sources.own=/data/my_photos [-S …]``, then ``posfeat eval-real``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from posfeat.trainset.manifest import write_metadata_manifest
from stages import prepare_megadepth, train_desc, train_kp
from stages.common import load_params

ROOT = Path(__file__).resolve().parents[2]


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
    ap.add_argument("--out", help="posfeat eval-real results JSON (default: <work>/real.json)")
    ap.add_argument("--data", required=True, help="the real data folder (posfeat eval-real --data)")
    ap.add_argument("--eval-args", default="--no-eth", help="more posfeat eval-real arguments")
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
            "-m",
            "posfeat",
            "eval-real",
            "--weights",
            str(work / "models" / "posfeat.pt"),
            "--params",
            str(work / "params.yaml"),
            "--data",
            args.data,
            "--out",
            out,
            *args.eval_args.split(),
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )


if __name__ == "__main__":
    main()
