"""The statistic registry (kon_ray/drift/statistics.py): each entry against scipy on hand data, the registry's rules,
and a statistic registered here reaching compare's output with no other file touched (pure, no Ray)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from kon_ray.drift import ks, statistics
from kon_ray.drift.compare import compare
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.reference import NumericReference, ReferenceSummary
from kon_ray.drift.report import report_json
from kon_ray.drift.statistics import MEASURE, Counts, Measure, Statistic
from kon_ray.drift.summary import CATEGORICAL, NUMERIC, sample_edges

CFG = DriftConfig()
NO_BINS = np.zeros(1, dtype=np.int64)


def _psi_like_scipy(statistic: Statistic) -> None:
    ref, cur = np.array([10, 20, 30, 40]), np.array([25, 25, 25, 25])
    p, q = ref / ref.sum(), cur / cur.sum()
    for kind in (NUMERIC, CATEGORICAL):
        got = statistic.compute(Counts(kind, ref, cur), CFG)
        # PSI is the symmetric Kullback-Leibler divergence when no bin is empty
        assert got.value == pytest.approx(stats.entropy(q, p) + stats.entropy(p, q), abs=1e-12)


def _ks_like_scipy(statistic: Statistic) -> None:
    ref = np.array([1.0, 2.0, 2.0, 3.5, 4.0, 7.0, np.nan])
    cur = np.array([0.5, 2.0, 3.0, 3.5, 8.0, 9.0, 2.0, np.nan, np.nan])
    edges = sample_edges(ref, 2048)  # every distinct reference value an edge: D exact
    got = statistic.compute(Counts(NUMERIC, NO_BINS, NO_BINS, ks.slot_counts(ref, edges), ks.slot_counts(cur, edges)),
                            CFG)
    expected = stats.ks_2samp(ref[~np.isnan(ref)], cur[~np.isnan(cur)], method="asymp")
    assert got.value == pytest.approx(expected.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert got.effect_size == got.value and got.fields == {"ks_upper": got.value, "ks_exact": True}
    assert got.note == ""


def _chi2_like_scipy(statistic: Statistic) -> None:
    table = np.array([[10, 20, 30, 5], [15, 15, 40, 0]])
    got = statistic.compute(Counts(CATEGORICAL, table[0], table[1]), CFG)
    expected = stats.chi2_contingency(table, correction=False)
    assert (got.value, got.p_value) == pytest.approx((expected.statistic, expected.pvalue), abs=1e-12)
    assert got.fields == {"dof": expected.dof}
    assert got.effect_size == pytest.approx(stats.contingency.association(table, method="cramer"), abs=1e-12)


SCIPY = {"psi": _psi_like_scipy, "ks": _ks_like_scipy, "chi2": _chi2_like_scipy}


@pytest.mark.parametrize("statistic", statistics.STATISTICS, ids=lambda s: s.name)
def test_every_statistic_matches_scipy_on_hand_data(statistic):
    SCIPY[statistic.name](statistic)  # a KeyError here: a new entry without its check against scipy


def test_undefined_statistics_say_why():
    empty = np.array([0, 0, 0, 4])  # one edge; every value missing
    got = statistics.KS.compute(Counts(NUMERIC, NO_BINS, NO_BINS, empty, np.array([1, 2, 0, 0])), CFG)
    assert np.isnan(got.value) and np.isnan(got.p_value) and got.fields["ks_upper"] is None
    assert got.note.endswith("no non-missing reference value")
    got = statistics.CHI2.compute(Counts(CATEGORICAL, np.array([3, 1]), np.array([0, 0])), CFG)
    assert np.isnan(got.value) and got.note.startswith("chi-squared undefined")


def test_grades_are_the_severity_rule():
    psi, test = statistics.band_statistic(), statistics.kind_test(NUMERIC)
    assert [psi.graded(v, CFG) for v in (0.0999, 0.1, 0.25, 0.2501)] == ["NONE", "MODERATE", "MODERATE", "HIGH"]
    assert [test.graded(p, CFG) for p in (0.0499, 0.05, float("nan"))] == ["MODERATE", "LOW", "LOW"]
    assert statistics.kind_test(CATEGORICAL).name == "chi2" and psi.limits(CFG) == {"psi_moderate": 0.1,
                                                                                   "psi_high": 0.25}


@pytest.mark.parametrize("change,message", [
    (lambda s: (*s, replace(statistics.KS, name="ad")), "exactly one test for numeric features"),
    (lambda s: (*s, replace(statistics.PSI, name="psi2")), "exactly one band"),
    (lambda s: (replace(s[0], thresholds=("psi_hihg",)), *s[1:]), r"thresholds \['psi_hihg'\] are not drift config"),
    (lambda s: (*s, replace(statistics.CHI2, name="v", role=MEASURE)), "a measure none"),
    (lambda s: (*s, statistics.CHI2), "named twice"),
], ids=["second numeric test", "second band", "unknown threshold", "graded measure", "duplicate name"])
def test_the_registry_refuses_a_broken_entry(change, message):
    with pytest.raises(ValueError, match=message):
        statistics.check(change(statistics.STATISTICS))


def _total_shift(counts: Counts, cfg: DriftConfig) -> Measure:
    """A toy measure: the total variation distance between the two sides' bins."""
    ref, cur = counts.reference / counts.reference.sum(), counts.current / counts.current.sum()
    return Measure(float(np.abs(ref - cur).sum()) / 2)


def test_a_statistic_registered_here_reaches_compare(monkeypatch):
    toy = Statistic("total_shift", MEASURE, statistics.KINDS, _total_shift, spread=True)
    monkeypatch.setattr(statistics, "STATISTICS", statistics.check((*statistics.STATISTICS, toy)))
    # KS edges -inf, 1, 2, 3, +inf; PSI bins (-inf, 1], (1, 2], (2, inf), then -inf, +inf, missing
    edges = np.array([-np.inf, 1.0, 2.0, 3.0, np.inf])
    reference = ReferenceSummary(
        rows=31, psi_bins=3,
        numeric={"kwh": NumericReference(ks_edges=edges, ks_slots=np.array([0, 0, 0, 10, 0, 10, 0, 10, 0, 0, 0, 1]),
                                         psi_edges=np.array([1.0, 2.0]), psi_counts=np.array([10, 10, 10, 0, 0, 1]))},
        categorical={"tariff": {"A": 15, "B": 15, None: 1}})
    current = {"slots": {"kwh": np.array([0, 0, 0, 2, 0, 5, 0, 20, 3, 0, 0, 0])},
               "psi": {"kwh": np.array([2, 5, 23, 0, 0, 0])},
               "categories": {"tariff": {"A": 6, "B": 18, "C": 6}}}
    kwh, tariff = compare(reference, current, CFG)
    assert kwh["total_shift"] == pytest.approx((abs(10 / 31 - 2 / 30) + abs(10 / 31 - 5 / 30) + abs(10 / 31 - 23 / 30)
                                                + 1 / 31) / 2)
    assert tariff["total_shift"] == pytest.approx((abs(15 / 31 - 6 / 30) + abs(15 / 31 - 18 / 30) + 1 / 31
                                                   + 6 / 30) / 2)
    # after the test's keys, and the rest of the feature as before
    assert list(kwh)[list(kwh).index("ks_exact") + 1] == "total_shift" and kwh["test"] == "ks"
    assert list(tariff)[list(tariff).index("dof") + 1] == "total_shift" and tariff["severity"] == "HIGH"
    report_json({"features": [kwh, tariff]})  # still strict JSON
