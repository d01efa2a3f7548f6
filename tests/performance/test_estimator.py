"""The estimator against independent oracles: a tiny case worked by hand (every number below is arithmetic on
the rows, not the code's output), sklearn's isotonic regression, a numeric delta method, and a Monte Carlo of the
realized metric; and exact merges on any split of the rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kon_ray.performance.estimator import (
    SCALE,
    Partial,
    ReferenceBins,
    accuracy,
    estimate,
    fit_calibration,
    inside,
    isotonic,
    macro_f1,
    predicted,
    thresholds,
)
from tests.performance.synthetic import draw, model

# Reference: two classes (a, b), p_b = 1 - p_a, two score bins [0, .5) and [.5, 1].
REF_PA = np.array([0.2, 0.4, 0.6, 0.8, 0.9])
REF_LABELS = np.array([1, 0, 0, 0, 1])  # b, a, a, a, b


def _two(pa_: np.ndarray) -> np.ndarray:
    return np.column_stack([pa_, 1 - pa_])


def _tiny():
    counts = ReferenceBins(2, 2).add(_two(REF_PA), REF_LABELS)
    return counts, fit_calibration(counts)


def test_calibration_by_hand():
    counts, cal = _tiny()
    a, b = cal.per_class
    # class a: bin 0 holds .2, .4 (mean .3, one a of two); bin 1 holds .6, .8, .9 (mean 23/30, two a of three)
    assert a.x == pytest.approx([0.3, 23 / 30]) and a.y == pytest.approx([0.5, 2 / 3])
    # class b: p_b = .8, .6, .4, .2, .1; bin 0 holds .4, .2, .1 (mean 7/30, one b), bin 1 .8, .6 (mean .7, one b)
    assert b.x == pytest.approx([7 / 30, 0.7]) and b.y == pytest.approx([1 / 3, 0.5])
    # ECE before: (2 |.3 - .5| + 3 |23/30 - 2/3|) / 5 = (.4 + .3) / 5; already monotone, so 0 after
    assert a.ece_before == pytest.approx(0.14) and a.ece_after == pytest.approx(0.0, abs=1e-12)
    assert b.ece_before == pytest.approx((3 * 0.1 + 2 * 0.2) / 5)
    assert (a.rows, a.positives, b.positives) == (5, 3, 2)
    # every reference row is predicted a or b with its score in the upper bin
    assert cal.seen.tolist() == [[False, True], [False, True]]


def test_cbpe_by_hand():
    _, cal = _tiny()
    current = _two(np.array([0.3, 0.85]))
    calibrated = cal.apply(current)
    # row 1: a at x=.3 -> .5, b at .7 -> .5; row 2: a beyond 23/30 -> 2/3 (clipped), b below 7/30 -> 1/3
    assert calibrated == pytest.approx(np.array([[0.5, 0.5], [2 / 3, 1 / 3]]))
    pred = predicted(current)
    assert pred.tolist() == [1, 0]
    part = Partial(2).add(calibrated, pred, cal.unseen(current, pred), np.array([0, 0]))
    est = estimate(part)
    # E[predicted][true]: row 2 (predicted a) gives [2/3, 1/3], row 1 (predicted b) gives [.5, .5]
    assert est.expected_confusion == pytest.approx(np.array([[2 / 3, 1 / 3], [0.5, 0.5]]), abs=1e-9)
    assert est.estimated["accuracy"] == pytest.approx(7 / 12, abs=1e-9)
    # F1_a = 2 (2/3) / (1 + 7/6) = 8/13, F1_b = 2 (.5) / (1 + 5/6) = 6/11
    assert est.estimated["macro_f1"] == pytest.approx((8 / 13 + 6 / 11) / 2, abs=1e-9)
    # accuracy's variance: (2/3 * 1/3 + .5 * .5) / 2^2 = 17/144
    assert est.standard_error["accuracy"] == pytest.approx(math.sqrt(17) / 12, abs=1e-9)
    assert est.lower["accuracy"] == 0.0 and est.upper["accuracy"] == 1.0  # clipped to [0, 1]
    # realized: both rows are a: accuracy 1/2; F1_a = 2/3, F1_b = 0 (predicted once, never true)
    assert est.realized == pytest.approx({"accuracy": 0.5, "macro_f1": 1 / 3})
    assert inside(est) == {"accuracy": True, "macro_f1": True}
    assert est.unseen_share == 0.0 and est.labelled == 2


def test_macro_f1_band_is_the_delta_method():
    """An independent delta method: a numeric gradient of macro F1 in (TP_k, FN_k), each row's one-hot true class
    with covariance diag(c) - c c^T."""
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], size=40)
    pred = predicted(probs)
    est = estimate(Partial(3).add(probs, pred, np.zeros(40, bool)))
    count = np.bincount(pred, minlength=3).astype(float)

    def f(v: np.ndarray) -> float:
        t, fn = v[:3], v[3:]
        return float(np.mean(2 * t / (t + count + fn)))

    expected = np.zeros((3, 3))
    for row, j in zip(probs, pred):
        expected[j] += row
    point = np.concatenate([np.diag(expected), expected.sum(axis=0) - np.diag(expected)])
    grad = np.array([(f(point + h) - f(point - h)) / 2e-6 for h in np.eye(6) * 1e-6])
    variance = 0.0
    for row, j in zip(probs, pred):
        a = np.zeros((6, 3))  # the row's true class one-hot -> (TP, FN)
        for k in range(3):
            a[k if k == j else 3 + k, k] = 1
        cov = np.diag(row) - np.outer(row, row)
        variance += grad @ a @ cov @ a.T @ grad
    assert est.standard_error["macro_f1"] == pytest.approx(math.sqrt(variance), rel=1e-5)
    assert est.estimated["macro_f1"] == pytest.approx(f(point), rel=1e-9)


def test_band_matches_a_monte_carlo_of_the_realized_metric():
    rng = np.random.default_rng(5)
    probs = model(rng.normal(0, 1.5, size=4000))
    pred = predicted(probs)
    est = estimate(Partial(3).add(probs, pred, np.zeros(len(probs), bool)))
    acc, f1 = [], []
    for _ in range(300):
        confusion = np.zeros((3, 3))
        np.add.at(confusion, (pred, draw(probs, rng)), 1)
        acc.append(accuracy(confusion))
        f1.append(macro_f1(confusion))
    assert np.mean(acc) == pytest.approx(est.estimated["accuracy"], abs=0.003)
    assert np.mean(f1) == pytest.approx(est.estimated["macro_f1"], abs=0.003)
    assert np.std(acc) == pytest.approx(est.standard_error["accuracy"], rel=0.15)
    assert np.std(f1) == pytest.approx(est.standard_error["macro_f1"], rel=0.15)


def test_isotonic_by_hand_and_against_sklearn():
    # .5 > .2 pool to (.5 * 1 + .2 * 3) / 4 = .275
    assert isotonic([0.5, 0.2, 0.9], [1, 3, 1]) == pytest.approx([0.275, 0.275, 0.9])
    iso = pytest.importorskip("sklearn.isotonic")
    rng = np.random.default_rng(11)
    probs = rng.dirichlet([0.7, 0.7, 0.7], size=3000)
    labels = draw(np.clip(probs ** 1.7, 1e-9, None) / np.clip(probs ** 1.7, 1e-9, None).sum(1, keepdims=True), rng)
    counts = ReferenceBins(3, 20).add(probs, labels)
    cal = fit_calibration(counts)
    grid = np.linspace(0, 1, 101)
    for k, c in enumerate(cal.per_class):
        used = counts.rows[k].astype(float) > 0
        n = counts.rows[k][used].astype(float)
        x = counts.score_sum[k][used].astype(float) / SCALE / n
        y = counts.positives[k][used].astype(float) / n
        oracle = iso.IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=n)
        assert np.interp(grid, c.x, c.y) == pytest.approx(oracle.predict(grid), abs=1e-12)


def test_merges_are_exact_on_any_split():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([1, 2, 3], size=1000)
    labels = rng.integers(-1, 3, size=1000)
    pred = predicted(probs)
    unseen = rng.random(1000) < 0.1
    whole = Partial(3).add(probs, pred, unseen, labels)
    ref_whole = ReferenceBins(3, 10).add(probs, np.maximum(labels, 0))
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=7, replace=False))
    parts, refs = Partial(3), ReferenceBins(3, 10)
    for piece in reversed(np.split(np.arange(1000), cuts)):  # another order, too
        parts = parts.merge(Partial(3).add(probs[piece], pred[piece], unseen[piece], labels[piece]))
        refs = refs.merge(ReferenceBins(3, 10).add(probs[piece], np.maximum(labels[piece], 0)))
    for name in ("predicted", "expected", "second", "realized"):
        assert getattr(parts, name).tolist() == getattr(whole, name).tolist()
    assert (parts.rows, parts.unseen, parts.labelled) == (whole.rows, whole.unseen, whole.labelled)
    for name in ("rows", "positives", "score_sum", "region"):
        assert getattr(refs, name).tolist() == getattr(ref_whole, name).tolist()
    a, b = estimate(parts), estimate(whole)
    assert (a.estimated, a.standard_error, a.realized) == (b.estimated, b.standard_error, b.realized)  # bit for bit


def test_alarm_band_is_mean_plus_minus_three_sd():
    band = thresholds([0.8, 0.82, 0.78, 0.8])
    sd = float(np.std([0.8, 0.82, 0.78, 0.8], ddof=1))
    assert band == pytest.approx({"mean": 0.8, "sd": sd, "lower": 0.8 - 3 * sd, "upper": 0.8 + 3 * sd})
    assert thresholds([0.8]) is None
