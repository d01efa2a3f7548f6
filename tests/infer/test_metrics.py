"""Metrics against hand counts, exact merging, and the report's JSON/HTML on a tiny known prediction set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kon_ray.infer import html
from kon_ray.infer.report import build_report
from kon_ray.model import metrics
from kon_ray.model.score import merge_metric_partials, metric_partials

LABELS = ["a", "b", "c"]
# five records: actual a, a, b, b, c; predicted (argmax) a, b, b, b, a
Y_TRUE = np.array([0, 0, 1, 1, 2])
PROBS = np.array([
    [0.7, 0.2, 0.1],
    [0.3, 0.4, 0.3],
    [0.2, 0.6, 0.2],
    [0.05, 0.9, 0.05],
    [0.5, 0.4, 0.1],
])
P_TRUE = [0.7, 0.3, 0.6, 0.9, 0.1]


def test_confusion_and_scores_by_hand():
    part = metrics.partial(Y_TRUE, PROBS, {}, 3)
    assert part["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert part["logloss_sum"] == pytest.approx(-sum(math.log(p) for p in P_TRUE), abs=1e-12)
    m = metrics.from_confusion(part["confusion"], LABELS)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # precision: a 1/2, b 2/3, c 0 (never predicted); recall: a 1/2, b 2/2, c 0/1
    assert [m["per_class"][c]["precision"] for c in LABELS] == pytest.approx([0.5, 2 / 3, 0.0])
    assert [m["per_class"][c]["recall"] for c in LABELS] == pytest.approx([0.5, 1.0, 0.0])
    # F1: a 0.5, b 2*(2/3)*1/(5/3) = 0.8, c 0 -> macro (0.5 + 0.8 + 0) / 3
    assert m["macro_f1"] == pytest.approx(1.3 / 3)
    assert m["per_class"]["c"]["support"] == 1 and m["per_class"]["a"]["predicted"] == 2


def test_macro_f1_leaves_out_a_class_neither_present_nor_predicted():
    m = metrics.from_confusion([[2, 0, 0], [1, 1, 0], [0, 0, 0]], LABELS)
    # a: p 2/3 r 1 -> f1 0.8; b: p 1 r 1/2 -> f1 2/3; c absent everywhere
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_log_loss_clips_zero_probability():
    assert metrics.logloss_sum(np.array([1]), np.array([[1.0, 0.0]])) == pytest.approx(-math.log(1e-15))


def test_partials_merge_to_the_whole():
    groups = {"estrato": np.array([1, 1, 2, 2, 0])}
    whole = metrics.partial(Y_TRUE, PROBS, groups, 3)
    merged = metrics.merge([metrics.partial(Y_TRUE[s], PROBS[s], {"estrato": groups["estrato"][s]}, 3)
                            for s in (slice(0, 2), slice(2, 3), slice(3, None))])
    assert merged["confusion"] == whole["confusion"] and merged["n"] == 5
    assert merged["logloss_sum"] == pytest.approx(whole["logloss_sum"], abs=1e-12)
    assert merged["groups"] == whole["groups"]
    assert merged["groups"]["estrato"]["2"] == [[0, 0, 0], [0, 2, 0], [0, 0, 0]]


def _prediction_batch():
    return {
        "population": np.array(["domestic"] * 5 + ["industrial"], dtype=object),
        "actual": np.array(["a", "a", "b", "b", "c", "a"], dtype=object),
        "estrato": np.array([1, 1, 2, 2, 0, 3], dtype=np.int8),
        "cluster": np.array([0, 1, 0, 1, 0, 0], dtype=np.int16),
        **{f"prob_{c}": np.append(PROBS[:, i], [0.2, 0.8, np.nan][i]) for i, c in enumerate(LABELS)},
    }


def test_metric_partials_merge_per_population():
    batch = _prediction_batch()
    labels = {"domestic": LABELS, "industrial": ["a", "b"]}
    halves = [{k: v[s] for k, v in batch.items()} for s in (slice(0, 3), slice(3, None))]
    merged = merge_metric_partials([metric_partials(h, labels) for h in halves])
    assert merged["domestic"]["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert merged["industrial"]["confusion"] == [[0, 1], [0, 0]]  # actual a, predicted b (0.8)
    assert merged["industrial"]["logloss_sum"] == pytest.approx(-math.log(0.2))


def test_report_numbers_and_html():
    merged = merge_metric_partials([metric_partials(_prediction_batch(), {"domestic": LABELS})])
    metadata = {"class_labels": LABELS, "class_counts": {"a": 10, "b": 30, "c": 5}, "best_iteration": 7,
                "rounds_trained": 12}
    report = build_report("POLA", "domestic", metadata, {"current": merged["domestic"]},
                          [{"feature": "f_001", "gain": 3.5}, {"feature": "estrato", "gain": 1.25}],
                          {"available": False, "reason": "not installed"}, {"unavailable": "not estimated"})
    current = report["splits"]["current"]
    assert set(report) == {"dataset", "population", "model", "splits", "feature_importance", "prediction_drift",
                           "performance", "drift_flag"}
    assert report["drift_flag"] is False  # prediction drift was not available: nothing to raise it
    assert current["accuracy"] == pytest.approx(0.6) and current["rows"] == 5
    assert current["log_loss"] == pytest.approx(-sum(math.log(p) for p in P_TRUE) / 5)
    # the baseline always predicts "b" (the training majority): right for the 2 of 5 records that are b
    assert current["baseline"] == {"majority_class": "b", "accuracy": pytest.approx(0.4)}
    assert current["by"]["estrato"]["1"]["rows"] == 2 and current["by"]["estrato"]["1"]["accuracy"] == 0.5
    assert list(current["by"]["estrato"]) == ["0", "1", "2"]
    json.dumps(report)  # serialisable as is

    page = html.render(report)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<svg") == 4  # importance, confusion, by estrato, by cluster
    assert "<table>" in page and "60.00%" in page and "40.00%" in page and "prediction drift: not available" in page
