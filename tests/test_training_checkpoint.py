"""Resume from the checkpoint: an interrupted run ends equal to an uninterrupted one, and a checkpoint of
another configuration or other training code is not resumed (posfeat.training.checkpoint, fingerprints)."""

from __future__ import annotations

import json

import pytest
import torch
from training_setup import TINY_MODEL, index, tiny_cfg  # noqa: F401 (a fixture)

from posfeat.training import TrainingInterrupted, train


def _state(path):
    from posfeat.models import load_checkpoint

    return load_checkpoint(path)[0].state_dict()


def test_resume_after_interruption_equals_uninterrupted(index, tmp_path):
    cfg = tiny_cfg("desc", steps_per_epoch=2, epochs=2, lr_decay_step=1, checkpoint_every=2, log_every=1, vis_every=2)
    kw = dict(model_config=TINY_MODEL, optimizer="adam", lr=1e-3, seed=0, device="cpu", progress=False)
    a = tmp_path / "a"
    ma = train("desc", index, cfg, out_model=a / "m.pt", ckpt_dir=a / "ckpt", live_dir=a / "live", **kw)
    b = tmp_path / "b"
    with pytest.raises(TrainingInterrupted):
        train("desc", index, cfg, out_model=b / "m.pt", ckpt_dir=b / "ckpt", live_dir=b / "live", stop_after=3, **kw)
    assert not (b / "m.pt").exists() and (b / "ckpt" / "last.pt").is_file()
    mb = train("desc", index, cfg, out_model=b / "m.pt", ckpt_dir=b / "ckpt", live_dir=b / "live", **kw)
    sa, sb = _state(a / "m.pt"), _state(b / "m.pt")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ma["loss"] == mb["loss"] and ma["components"] == mb["components"]
    logs = ["loss.tsv", "val/precision.tsv", "val/matches.tsv"]
    for f in logs:  # the training rows and the validation statistics alike
        assert (a / "live/plots/metrics" / f).read_text() == (b / "live/plots/metrics" / f).read_text(), f
    # rerunning the finished run (as `dvc repro` does after an unrelated change) keeps every log
    before = {f: (a / "live/plots/metrics" / f).read_text() for f in logs}
    train("desc", index, cfg, out_model=a / "m.pt", ckpt_dir=a / "ckpt", live_dir=a / "live", **kw)
    assert {f: (a / "live/plots/metrics" / f).read_text() for f in logs} == before
    # a checkpoint written under another configuration is ignored (training starts over)
    c = tmp_path / "c"
    train("desc", index, cfg, out_model=c / "m.pt", ckpt_dir=c / "ckpt", **{**kw, "lr": 5e-4})
    (c / "ckpt").rename(c / "other")
    (b / "ckpt").rename(c / "ckpt")
    mc = train("desc", index, cfg, out_model=c / "m2.pt", ckpt_dir=c / "ckpt", **{**kw, "lr": 5e-4})
    assert mc["loss"] == pytest.approx(json.loads(json.dumps(mc))["loss"])
    sc, sd = _state(c / "m.pt"), _state(c / "m2.pt")
    assert all(torch.equal(sc[k], sd[k]) for k in sc)


def test_changed_training_code_does_not_resume_a_finished_run(index, tmp_path, monkeypatch):
    """DVC reruns train_* when their code changes: the old final checkpoint must not be 'resumed'."""
    import posfeat.training.fingerprints as T  # the digest the loop calls

    cfg = tiny_cfg("desc", steps_per_epoch=2, epochs=1, checkpoint_every=1, log_every=1)
    kw = dict(model_config=TINY_MODEL, optimizer="adam", lr=1e-3, seed=0, device="cpu", progress=False)
    first = train("desc", index, cfg, out_model=tmp_path / "m.pt", ckpt_dir=tmp_path / "ckpt", **kw)
    ckpt = tmp_path / "ckpt" / "last.pt"
    before = torch.load(ckpt, weights_only=True)["fingerprint"]
    # same code: the finished run is found and nothing is retrained (same fingerprint, same model)
    again = train("desc", index, cfg, out_model=tmp_path / "m.pt", ckpt_dir=tmp_path / "ckpt", **kw)
    assert again["loss"] == first["loss"]
    # the step times travel in the checkpoint: the finished run keeps reporting its own speed
    assert first["seconds_per_iteration"] > 0 and again["seconds_per_iteration"] == first["seconds_per_iteration"]
    assert torch.load(ckpt, weights_only=True)["fingerprint"] == before
    # changed code: the checkpoint is ignored and the run starts over under a new fingerprint
    monkeypatch.setattr(T, "code_digest", lambda: "changed-code")
    train("desc", index, cfg, out_model=tmp_path / "m.pt", ckpt_dir=tmp_path / "ckpt", **kw)
    assert torch.load(ckpt, weights_only=True)["fingerprint"] != before
