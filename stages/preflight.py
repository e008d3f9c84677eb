"""DVC stage ``preflight``: what the study needs from this machine, checked before any other stage runs.

Every stage that starts from inputs (the demo world, own photos, the pair index, the extractions) depends on
``data/preflight.json``, so DVC runs this stage first whenever one of the parameters it checks changes (the paper
switch, another data set, given weights), and a missing requirement stops the run **before** DVC removes any
stage's outputs: the committed results stay as they are. Checks, with one line per failure:

* ``device``: CUDA requested on a machine without it;
* ``datasets.*``: dataset roots and the MegaDepth metadata manifest (those the pipeline makes itself, the demo
  world and own photos, are skipped), and ``photos.sources`` folders;
* ``weights.path`` when training is skipped (``weights=given``);
* ImageNet weights when ``model.pretrained``: fetched into torch's cache, checksum-verified, when absent;
* the files of methods given as features (``extract.methods``, kind ``given``).

``data/preflight.json`` holds the names of the checks only (never what they found), so that passing them again
reruns nothing downstream. Run: ``python -m stages.preflight``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.extraction.methods import method_specs
from posfeat.io import DataError, write_json
from posfeat.models.imagenet import fetch_weights, has_imagenet_weights
from posfeat.settings import param
from stages.common import ROOT, load_params, stage_entry

OUT_PATH = Path("data/preflight.json")
CHECKS = ("device", "datasets", "weights", "pretrained", "given_features")
WAY_BACK = (
    "nothing else ran and no result changed; back to the committed study: git checkout -- params.yaml && dvc checkout"
)


def _made_by_the_pipeline(params: dict) -> list[str]:
    """Folders and files that stages of this study write (so they need not exist yet)."""
    made = [f"data/{name}" for name in param(params, "datasets.render", list[str], [])]
    for name in param(params, "photos.sources", dict, {}):
        made += [f"data/photos/{name}", f"data/photos/{name}_metadata.json"]
    return made


def _missing(path: str, base_dir: Path, made: list[str]) -> bool:
    """Whether ``path`` (relative to ``base_dir`` unless absolute) is absent and not made by a stage."""
    if not Path(path).is_absolute() and any(path == m or path.startswith(m.rstrip("/") + "/") for m in made):
        return False
    p = Path(path) if Path(path).is_absolute() else base_dir / path
    return not p.exists()


def check_device(params: dict) -> list[str]:
    """CUDA asked for (``device: cuda``) on a machine without it."""
    device = str(param(params, "device", str, "auto"))
    if not device.startswith("cuda"):
        return []
    import torch

    if torch.cuda.is_available():
        return []
    return [
        f"params.yaml: device = {device!r} but this machine has no CUDA; to run on its CPU on purpose, add "
        "-S device=cpu to the same command, keeping your other -S options (e.g. dvc exp run -S scale=paper "
        "-S data=real -S device=cpu: about 1.5 min per stage-1 step)"
    ]


def check_datasets(params: dict, base_dir: Path) -> list[str]:
    """Dataset roots, the MegaDepth manifest and photo folders that are neither present nor made by a stage."""
    made = _made_by_the_pipeline(params)
    errors = []
    for key, path in param(params, "datasets", dict).items():
        if isinstance(path, str) and key != "render" and _missing(path, base_dir, made):
            hint = (
                "make it with python -m posfeat megadepth-manifest (README)"
                if key == "megadepth_metadata"
                else "set it in conf/data/ (docs/paper-scale.md says where each release comes from)"
            )
            errors.append(f"params.yaml: datasets.{key} = {path!r} does not exist; {hint}")
    for name, path in param(params, "photos.sources", dict, {}).items():
        if _missing(str(path), base_dir, []):
            errors.append(f"params.yaml: photos.sources.{name} = {str(path)!r}: no such photo folder")
    return errors


def check_weights(params: dict, base_dir: Path) -> list[str]:
    """A given checkpoint (``weights.train`` empty) that is not there."""
    if param(params, "weights.train", list[str], ["posfeat"]):
        return []
    path = str(param(params, "weights.path", str))
    if _missing(path, base_dir, []):
        return [
            f"params.yaml: weights.path = {path!r}: no such checkpoint (weights=given reads it instead of training)"
        ]
    return []


def check_pretrained(params: dict) -> list[str]:
    """ImageNet weights that ``model.pretrained`` needs: fetched into torch's cache (checksum-verified) when
    absent; a failure to fetch them, or a wrong checksum, is reported."""
    encoder = str(param(params, "model.encoder", str))
    if not param(params, "model.pretrained", bool, False) or not has_imagenet_weights(encoder):
        return []
    try:
        fetch_weights(encoder)
    except DataError as e:
        return [str(e)]
    return []


def check_given_features(params: dict, base_dir: Path) -> list[str]:
    """Feature files of methods of kind ``given`` that are not there."""
    errors = []
    for name, spec in method_specs(param(params, "extract.methods")).items():
        if spec.kind != "given":
            continue
        for benchmark, path in spec.sources.items():
            if _missing(str(path), base_dir, []):
                errors.append(f"params.yaml: extract.methods.{name}.{benchmark} = {str(path)!r}: no such feature file")
    return errors


def main(params: dict | None = None, base_dir: Path = ROOT) -> list[str]:
    """Run every check; all failures in one error (a line each), else write :data:`OUT_PATH`."""
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    errors = [
        *check_device(params),
        *check_datasets(params, base_dir),
        *check_weights(params, base_dir),
        *check_pretrained(params),
        *check_given_features(params, base_dir),
    ]
    if errors:
        raise DataError("; ".join(errors) + f" ({WAY_BACK})")
    write_json(base_dir / OUT_PATH, {"checks": list(CHECKS)})
    return errors


if __name__ == "__main__":
    stage_entry(main, "stages.preflight")
