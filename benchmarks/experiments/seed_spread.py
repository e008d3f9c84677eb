"""Spread of the study's headline metrics over training seeds: the default study run with ``seed`` 0, 1, 2.

    python -m benchmarks.experiments.seed_spread --run  # queue and run `dvc exp run -S seed=N -n seedN` (N = 1, 2)
    python -m benchmarks.experiments.seed_spread        # collect: the workspace (seed 0) and experiments seed1, seed2

Writes ``benchmarks/results/seed_spread.json``: per metric, the value of each seed, the mean and the sample
standard deviation. The demo world itself does not depend on ``seed`` (it has its own ``demo.seed``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "seed_spread.json"


def _exp_ref(name: str) -> str:
    """The commit of the experiment named ``name`` (``git for-each-ref refs/exps``)."""
    refs = subprocess.check_output(
        ["git", "for-each-ref", "refs/exps", "--format=%(refname) %(objectname)"], cwd=ROOT, text=True
    ).split("\n")
    hits = [r.split()[1] for r in refs if r.split() and r.split()[0].endswith("/" + name)]
    if not hits:
        raise SystemExit(
            f"no experiment named {name!r}: run `python -m benchmarks.experiments.seed_spread --run` first"
        )
    return hits[-1]


def _read(ref: str | None, path: str) -> dict:
    if ref is None:
        return json.loads((ROOT / path).read_text())
    return json.loads(subprocess.check_output(["git", "show", f"{ref}:{path}"], cwd=ROOT, text=True))


def headline(ref: str | None) -> dict[str, float]:
    """The headline metrics of one run (``ref``: an experiment commit; ``None``: the workspace)."""
    hp, eth, aachen = (_read(ref, f"metrics/{n}.json") for n in ("hpatches", "eth", "aachen"))
    out = {
        "train_desc loss": _read(ref, "metrics/train_desc.json")["loss"],
        "train_kp loss": _read(ref, "metrics/train_kp.json")["loss"],
    }
    for method in ("posfeat", "posfeat_sift", "sift"):
        for t in (1, 3, 5):
            out[f"HPatches {method} MMA@{t}"] = hp[method]["overall"][f"mma@{t}"]
        for scene, s in sorted(eth[method].items()):
            out[f"ETH {scene} {method} median rotation error (deg)"] = s["median_rotation_error_deg"]
            out[f"ETH {scene} {method} registered"] = s["num_reg_images"]
            out[f"ETH {scene} {method} reprojection error (px)"] = s["mean_reproj_error"]
        for cond in ("day", "night"):
            out[f"Aachen {method} {cond} localized"] = aachen[method][cond]["localized"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run the seed experiments first (about 7 min each, 2 cores)")
    args = ap.parse_args()
    if args.run:
        for seed in (1, 2):
            subprocess.run(["dvc", "exp", "run", "-S", f"seed={seed}", "-n", f"seed{seed}"], cwd=ROOT, check=True)
        subprocess.run(["git", "checkout", "main"], cwd=ROOT, check=False)
    runs = {"seed0": headline(None), "seed1": headline(_exp_ref("seed1")), "seed2": headline(_exp_ref("seed2"))}
    table = {}
    for key in runs["seed0"]:
        vals = [runs[r][key] for r in runs]
        table[key] = {"values": vals, "mean": statistics.fmean(vals), "std": statistics.stdev(vals)}
    OUT.write_text(json.dumps(table, indent=1) + "\n")
    for key, v in table.items():
        print(f"{key:60s} {v['mean']:.4f} ± {v['std']:.4f}  {['%.4f' % x for x in v['values']]}")


if __name__ == "__main__":
    main()
