"""stages.configure: the paper recipe merges into params.yaml, and its `dvc exp run -S` form splits correctly."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from posfeat.io import DataError
from stages import configure

ROOT = Path(__file__).resolve().parents[1]


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("name", ["paper.yaml", "tiny.yaml"])
def test_every_override_merges_into_params(tmp_path, name):
    """Every key of the config exists in params.yaml, and after the merge every stage sees the config's value."""
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    assert configure.main([str(ROOT / "configs" / name), "--params", str(params)]) == 0
    merged = _flat(yaml.safe_load(params.read_text()))
    for key, value in _flat(yaml.safe_load((ROOT / "configs" / name).read_text())).items():
        assert merged[key] == value, key


def test_dvc_args_survive_shell_word_splitting(capsys):
    """`dvc exp run $(… --dvc-args)`: each word is `-S` or `key=value`, and every value parses back as YAML."""
    assert configure.main([str(ROOT / "configs/paper.yaml"), "--dvc-args"]) == 0
    words = capsys.readouterr().out.split()  # what the shell does to an unquoted $(…)
    assert words[::2] == ["-S"] * (len(words) // 2) and len(words) % 2 == 0
    got = {w.split("=", 1)[0]: yaml.safe_load(w.split("=", 1)[1]) for w in words[1::2]}
    want = _flat(yaml.safe_load((ROOT / "configs/paper.yaml").read_text()))
    assert got == want
    assert got["train_desc.image_size"] == [640, 480] and shlex.split(" ".join(words)) == words


def test_dvc_args_refuse_white_space(tmp_path):
    bad = tmp_path / "o.yaml"
    bad.write_text("datasets: {hpatches: /data/my hpatches}\n")
    with pytest.raises(DataError, match="datasets.hpatches .* white space"):
        configure.dvc_args(yaml.safe_load(bad.read_text()))
