"""Planted shifts, end to end through Parquet (report.build, in process): where CBPE tracks the realized
performance, where it is known to fail (concept shift), and where it says it cannot be trusted (unseen regions)."""

from __future__ import annotations

import numpy as np
import pytest

from kon_ray.performance.config import PerformanceConfig
from kon_ray.performance.report import build
from tests.performance.synthetic import draw, model, table, write

CFG = PerformanceConfig(label_column="label", probability_prefix="prob_", chunk_rows=2000)


def _window(tmp_path, name, x, rng, labels_from=None, **kw):
    probs = model(x, **kw)
    labels = draw(probs if labels_from is None else labels_from, rng)
    return write(tmp_path / f"{name}.parquet", table(probs, labels, rng), row_group_size=1500)


def test_covariate_shift_with_a_calibrated_model_is_tracked_within_the_band(tmp_path):
    """Inputs move towards the uncertain middle (x ~ N(0, .6) instead of N(0, 2)); P(y | x) is unchanged and the
    model is calibrated: accuracy falls, and the label-free estimate falls with it, inside its band. The band
    leaves out the calibration map's own error (a finite reference), so the reference is large here: with 8000
    rows, sparse where the current rows now sit, the estimate ran about 0.02 low (3 SE of 6000 rows)."""
    rng = np.random.default_rng(21)
    ref = _window(tmp_path, "ref", rng.normal(0, 2.0, size=40000), rng)
    cur = _window(tmp_path, "cur", rng.normal(0, 0.6, size=6000), rng)
    report = build(str(ref), str(cur), CFG)
    assert [c["key"] for c in report["chunks"]] == [0, 1, 2] and [c["rows"] for c in report["chunks"]] == [2000] * 3
    reference_accuracy = report["reference_estimate"]["realized"]["accuracy"]
    overall = report["overall"]
    assert overall["realized"]["accuracy"] < reference_accuracy - 0.1  # the shift matters
    assert abs(overall["estimated"]["accuracy"] - overall["realized"]["accuracy"]) < 0.02
    for entry in report["chunks"] + [overall]:
        assert entry["inside"] == {"accuracy": True, "macro_f1": True}, entry
        assert not entry["unreliable"]
    assert all(c["alarm"] for c in report["chunks"])  # each chunk leaves the reference chunks' band
    assert report["alarm_bands"]["reference_chunks"] == 20


def test_concept_shift_is_where_cbpe_fails(tmp_path):
    """Known limitation, planted on purpose: the inputs and the model's probabilities are the same as in the
    reference, but the labels now follow another rule (a and b swapped). CBPE sees only the probabilities, so its
    estimate stays at the reference's accuracy while the realized accuracy collapses far outside the band, and
    nothing marks the estimate unreliable: only late labels (or a drift check of the labels) reveal it."""
    rng = np.random.default_rng(22)
    ref = _window(tmp_path, "ref", rng.normal(0, 2.0, size=20000), rng)
    x = rng.normal(0, 2.0, size=6000)
    swapped = model(x)[:, [1, 0, 2]]
    cur = _window(tmp_path, "cur", x, rng, labels_from=swapped)
    report = build(str(ref), str(cur), CFG)
    overall = report["overall"]
    assert overall["estimated"]["accuracy"] == pytest.approx(report["reference_estimate"]["estimated"]["accuracy"],
                                                             abs=0.02)
    assert overall["realized"]["accuracy"] < overall["lower"]["accuracy"] - 0.2
    assert overall["inside"] == {"accuracy": False, "macro_f1": False}
    assert not overall["unreliable"] and not any(c["alarm"] for c in report["chunks"])


def test_shift_into_an_unseen_region_is_marked_unreliable(tmp_path):
    """The reference's model is never confident (max probability under .8); the current rows sit far out where
    it is (above .95): their (predicted class, score bin) cells have no reference row, so the calibration there
    is an extrapolation and the estimate is marked unreliable, with the reason."""
    rng = np.random.default_rng(23)
    ref = _window(tmp_path, "ref", rng.uniform(-1, 1, size=4000), rng)
    x = np.concatenate([rng.uniform(-1, 1, size=2000), rng.choice([-1, 1], size=4000) * rng.uniform(4, 6, 4000)])
    cur = _window(tmp_path, "cur", x, rng)
    report = build(str(ref), str(cur), CFG)
    first, *later = report["chunks"]
    assert first["unseen_share"] == 0.0 and not first["unreliable"]
    for chunk in later:
        assert chunk["unseen_share"] == 1.0 and chunk["unreliable"]
        assert "the reference never saw" in chunk["reasons"][0]
    assert report["overall"]["unseen_share"] == pytest.approx(2 / 3)
    assert report["overall"]["unreliable"] and report["unreliable"]
