"""Headline metrics: the few numbers of each result that ``metrics/`` holds."""

from __future__ import annotations

from posfeat.evaluation.headline import aachen_headline, prepare_headline, training_headline


def test_aachen_with_and_without_ground_truth():
    with_gt = {
        "day": {"0.25m_2deg": 50.0, "0.5m_5deg": 75.0, "5m_10deg": 100.0, "localized": 4, "queries": 4},
        "night": {"0.25m_2deg": 0.0, "0.5m_5deg": 0.0, "5m_10deg": 0.0, "localized": 0, "queries": 2},
        "localized": 4,
        "queries": 6,
    }
    assert aachen_headline(with_gt) == {
        "day": {"0.25m_2deg": 50.0, "0.5m_5deg": 75.0, "5m_10deg": 100.0},
        "night": {"0.25m_2deg": 0.0, "0.5m_5deg": 0.0, "5m_10deg": 0.0},
    }
    # the real benchmark withholds the query poses: the share of queries with a pose instead
    withheld = {"day": {"localized": 2, "queries": 3}, "night": {"localized": 1, "queries": 4}}
    assert aachen_headline(withheld) == {"day": {"localized_%": 66.67}, "night": {"localized_%": 25.0}}


def test_training_and_prepare_keep_a_few_numbers():
    summary = {
        "steps": 200,
        "loss": 5.95637445,
        "loss_initial": 6.57304130,
        "components": {"cost_mean": 3.2},
        "seconds_per_iteration": 0.398496,
        "world_size": 1,
        "device": "cpu",
        "skipped_steps": 0,
        "skipped_samples": 0,
        "val": {"matches": 115.75, "precision": 0.52133595, "median_error": 26.6},
    }
    assert training_headline(summary) == {
        "steps": 200,
        "loss": 5.9564,
        "loss_initial": 6.573,
        "seconds_per_iteration": 0.3985,
        "skipped_samples": 0,
        "val_precision": 0.5213,
    }
    assert training_headline({"steps": 0, "loss": None, "val": {}}) == {"steps": 0}
    report = {"scenes_kept": 5, "images": 60, "pairs_train": 201, "pairs_val": 22, "pairs_total": 282}
    assert prepare_headline(report) == {"scenes_kept": 5, "images": 60, "pairs_train": 201, "pairs_val": 22}
