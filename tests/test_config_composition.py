"""The study's configuration: Hydra composition under conf/, written to params.yaml by `dvc exp run -S …`.

params.yaml must be exactly what conf/ composes to by default (so that the committed study is the demo and
`dvc exp run -S scale=demo -S data=demo` brings it back), and the documented switch to the paper's recipe
must reach every stage, checked through DVC itself in a temporary copy of the repository.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def _compose(*overrides: str) -> dict:
    with initialize_config_dir(str(CONF), version_base=None):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)), resolve=True)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_params_yaml_is_the_default_composition():
    assert _compose() == yaml.safe_load((ROOT / "params.yaml").read_text())
    assert _compose("scale=demo", "data=demo") == _compose()


def test_dvc_has_hydra_composition_enabled():
    text = (ROOT / ".dvc" / "config").read_text()
    assert "[hydra]" in text and "enabled = true" in text.split("[hydra]")[1]


def _group(path: Path) -> dict:
    """A group file's values (its defaults list is Hydra's, not a parameter)."""
    d = yaml.safe_load(path.read_text()) or {}
    d.pop("defaults", None)
    return d


@pytest.mark.parametrize(
    "group, option", [("scale", "paper"), ("scale", "tiny"), ("eth_protocol", "official"), ("data", "real")]
)
def test_every_group_key_exists_in_the_base(group, option):
    """A group option only changes keys the base declares (a typo would silently add a parameter no stage reads)."""
    base = _flat(_compose())
    values = _flat(_group(CONF / group / f"{option}.yaml"))
    for key in values:
        assert key in base, f"conf/{group}/{option}.yaml sets {key}, which conf/config.yaml does not declare"
    composed = _flat(_compose(f"{group}={option}"))
    assert all(composed[k] == v for k, v in values.items())


def test_paper_scale_selects_the_official_eth_protocol_unless_told_otherwise():
    assert _compose("scale=paper")["eval"]["eth"]["ratio"] == 0.75
    assert _compose("scale=paper", "eth_protocol=hloc")["eval"]["eth"]["ratio"] is None
    assert _compose("eth_protocol=official")["eval"]["eth"]["max_exhaustive_images"] is None


def test_paper_switch_through_dvc_reaches_every_stage(tmp_path):
    """`dvc exp run -S scale=paper -S data=real`, queued in a copy of the repository: the experiment's
    params.yaml carries the paper's recipe and the real roots, and every parameter a stage declares exists."""
    from test_pipeline import _copy_repo, _run

    repo = tmp_path / "study"
    repo.mkdir()
    _copy_repo(repo)
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "study"], repo)
    _run([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-S", "scale=paper", "-S", "data=real"], repo)
    stash = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    ref = next(r for r in stash if r.endswith("stash"))
    params = yaml.safe_load(
        subprocess.run(
            ["git", "show", f"{ref}:params.yaml"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
    )
    assert params == _compose("scale=paper", "data=real")
    flat = _flat(params)
    for key, value in {
        **_flat(_group(CONF / "scale" / "paper.yaml")),
        **_flat(_group(CONF / "data" / "real.yaml")),
        **_flat(_group(CONF / "eth_protocol" / "official.yaml")),
    }.items():
        assert flat[key] == value, key
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name, stage in dvc_yaml["stages"].items():
        body = stage.get("do", stage)
        for p in body.get("params", []):
            keys = [p] if isinstance(p, str) else list(p)
            for key in keys:
                for sub in list(params["extract"]["methods"]) if "${key}" in key else [None]:
                    k = key.replace("${key}", sub) if sub else key
                    assert k in flat or any(f.startswith(k + ".") for f in flat), f"{name}: {k}"


SETTINGS = [  # (settings dataclass, its params section)
    ("posfeat.evaluation.eth.config", "ETHConfig", "eval.eth"),
    ("posfeat.evaluation.aachen.config", "AachenConfig", "eval.aachen"),
    ("posfeat.photos.config", "PhotosConfig", "photos"),
    ("posfeat.extraction.config", "ExtractConfig", "extract.hpatches"),
    ("posfeat.extraction.config", "ExtractConfig", "extract.aachen"),
    ("posfeat.extraction.config", "ExtractConfig", "extract.eth"),
]


def _settings_fields(module: str, name: str, section: str):
    """``(field, its params key)`` of every field of the dataclass the study sets from params."""
    import dataclasses
    import importlib

    cls = getattr(importlib.import_module(module), name)
    for f in dataclasses.fields(cls):
        if f.metadata.get("study", True):
            yield f, f.metadata.get("param") or f"{section}.{f.name}"


def _same(a, b) -> bool:
    """Equal as YAML sees them (a tuple default is a YAML list)."""
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return norm(a) == norm(b)


@pytest.mark.parametrize("module, name, section", SETTINGS)
def test_every_setting_has_a_params_key(module, name, section):
    """Every field a stage reads (and the CLI documents) is a key of conf/config.yaml, so `-S key=value` can set it."""
    base = _flat(_compose())
    missing = [key for _, key in _settings_fields(module, name, section) if key not in base]
    assert not missing, f"{name}'s settings without a key in conf/config.yaml: {missing}"


@pytest.mark.parametrize("module, name, section", [s for s in SETTINGS if not s[2].startswith("extract.")])
def test_settings_defaults_are_the_study_defaults(module, name, section):
    """One default per setting: the dataclass (what the CLI and the Python API use) and conf/config.yaml agree.
    The extraction sections differ per benchmark on purpose, and are excluded."""
    import dataclasses

    base = _flat(_compose())
    differ = {
        key: (f.default, base[key])
        for f, key in _settings_fields(module, name, section)
        if f.default is not dataclasses.MISSING and not _same(f.default, base[key])
    }
    assert not differ, f"{name} defaults (dataclass, conf) disagree: {differ}"


def test_a_setting_the_cli_names_can_be_overridden():
    """`dvc exp run -S photos.min_images=5` composes (Hydra refuses to override a key the base lacks)."""
    assert _compose("photos.min_images=5")["photos"]["min_images"] == 5
    assert _compose("eval.eth.use_exif=false")["eval"]["eth"]["use_exif"] is False


def _defaults(cls) -> dict:
    """The fields of a configuration dataclass that have a default, with it."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.mark.parametrize("stage", ["desc", "kp"])
def test_training_settings_have_one_key_each_and_the_papers_defaults(stage):
    """Every field of a stage's configuration has a key in conf/ (so `-S train_<stage>.<field>=…` works), conf has no
    key the stage does not read, and the dataclass defaults are the paper's recipe (trajectory-free fields apart)."""
    import dataclasses

    from posfeat.training.config import STAGE_CONFIGS

    cls = STAGE_CONFIGS[stage]
    section = _compose()[f"train_{stage}"]
    stage_keys = set(section) - {"optimizer", "lr"}  # train_kp's own optimiser, read by the stage, not the config
    assert stage_keys == {f.name for f in dataclasses.fields(cls)}
    paper = _compose("scale=paper")[f"train_{stage}"]
    run_only = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("trajectory", True)}
    for name, default in _defaults(cls).items():
        if name not in run_only:
            assert _same(default, paper[name]), f"train_{stage}.{name}"


def test_model_settings_have_one_key_each_and_the_papers_defaults():
    """The same for the model: every ModelConfig field has a key under `model`, and its default is the paper's
    model, except `pretrained` (ImageNet weights must be fetched first: the library does not assume them)."""
    import dataclasses

    from posfeat.models.config import ModelConfig

    assert set(_compose()["model"]) == {f.name for f in dataclasses.fields(ModelConfig)}
    paper = _compose("scale=paper")["model"]
    for name, default in _defaults(ModelConfig).items():
        if name != "pretrained":
            assert _same(default, paper[name]), f"model.{name}"


def test_extraction_defaults_are_the_papers_hpatches_settings():
    """ExtractConfig's defaults (what `posfeat extract` uses without --params) are the paper's HPatches extraction,
    the D2-Net protocol's settings; the study's extract.<dataset> sections set every field (checked above)."""
    from posfeat.extraction.config import ExtractConfig

    paper = _compose("scale=paper")["extract"]["hpatches"]
    differ = {
        name: (default, paper[name])
        for name, default in _defaults(ExtractConfig).items()
        if name in paper and not _same(default, paper[name])
    }
    assert not differ, f"ExtractConfig defaults (dataclass, scale=paper extract.hpatches) disagree: {differ}"
