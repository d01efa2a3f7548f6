"""The pure statistics against scipy/numpy computed directly on the same tiny data (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kon_ray.drift import ks
from kon_ray.drift import psi as psi_mod
from kon_ray.drift.chi2 import chi2_homogeneity
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.severity import adjust_pvalues, overall_flag, severity
from kon_ray.drift.summary import (
    count_at_most,
    empty_collected,
    order_statistics,
    psi_counts_from_slots,
    sample_edges,
)
from tests.drift import oracle

CFG = DriftConfig()


def test_psi_hand_count():
    # ref 2/2 in two bins, cur 3/1: (0.75-0.5)ln(1.5) + (0.25-0.5)ln(0.5)
    expected = 0.25 * np.log(1.5) - 0.25 * np.log(0.5)
    assert psi_mod.psi(np.array([2, 2]), np.array([3, 1]), 1e-4) == pytest.approx(expected, abs=1e-12)


def test_psi_zero_bin_floored_at_epsilon():
    expected = (1.0 - 0.5) * np.log(1.0 / 0.5) + (1e-4 - 0.5) * np.log(1e-4 / 0.5)
    assert psi_mod.psi(np.array([1, 1]), np.array([4, 0]), 1e-4) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 7, 10, 11, 101])
def test_quantile_interpolation_matches_numpy(n):
    rng = np.random.default_rng(n)
    x = np.sort(rng.normal(size=n))
    lo, hi, gamma = psi_mod.quantile_ranks(n, 10)
    got = psi_mod.lerp(x[lo], x[hi], gamma)
    np.testing.assert_array_equal(got, np.quantile(x, np.arange(1, 10) / 10))


def _slots_and_values(values: np.ndarray, edges: np.ndarray):
    codes = ks.slot_codes(values, edges)
    slots = np.bincount(codes, minlength=2 * len(edges) + 2)
    keep = codes % 2 == 0
    return slots, (codes[keep], values[keep])


@pytest.mark.parametrize("edges", [np.array([2.0, 5.0]), np.array([0.5, 1.0, 3.0, 7.0, 9.0]), np.array([])])
def test_exact_psi_edges_and_counts_from_slots(edges):
    edges = np.concatenate(([-np.inf], edges, [np.inf]))  # sample_edges' layout: the infinite ends always there
    values = np.array([1.0, 5.0, 2.0, 2.0, np.nan, 7.5, 3.0, 9.0, 4.0, 5.0, np.nan])
    slots, collected = _slots_and_values(values, edges)
    finite = np.sort(values[~np.isnan(values)])
    lo, hi, gamma = psi_mod.quantile_ranks(len(finite), 4)
    stats_ = order_statistics(slots, edges, collected, np.concatenate([lo, hi]))
    np.testing.assert_array_equal(stats_, np.concatenate([finite[lo], finite[hi]]))
    psi_edges = psi_mod.edges_from_order_stats(stats_[: len(lo)], stats_[len(lo):], gamma)
    np.testing.assert_array_equal(psi_edges, np.unique(np.quantile(finite, [0.25, 0.5, 0.75])))
    counts = psi_counts_from_slots(slots, edges, collected, psi_edges)
    cut = pd.cut(pd.Series(finite), [-np.inf, *psi_edges, np.inf], right=True).value_counts(sort=False)
    np.testing.assert_array_equal(counts, [*cut.to_numpy(), 0, 0, 2])  # then -inf, +inf, missing
    assert count_at_most(slots, edges, collected, 5.0) == np.count_nonzero(finite <= 5.0)


def test_slot_codes_layout():
    edges = np.array([1.0, 3.0])
    codes = ks.slot_codes(np.array([0.0, 1.0, 2.0, 3.0, 4.0, np.nan]), edges)
    np.testing.assert_array_equal(codes, [0, 1, 2, 3, 4, 5])


def _ks_via_slots(ref: np.ndarray, cur: np.ndarray, edges: np.ndarray):
    d_low, d_up = ks.ks_from_slots(ks.slot_counts(ref, edges), ks.slot_counts(cur, edges))
    return d_low, d_up


@pytest.mark.parametrize(
    "ref,cur",
    [
        ([1, 2, 2, 3, 3, 3, 4], [2, 3, 3, 4, 4, 5]),  # ties, discrete
        ([0.1, 0.5, 0.9, 1.3, 2.0], [0.2, 0.4, 5.0]),
        ([5, 5, 5, 5], [5, 5, 6]),  # constant reference
        ([3.0], [1.0]),  # one row each
    ],
)
def test_ks_exact_when_every_reference_value_is_an_edge(ref, cur):
    ref, cur = np.asarray(ref, float), np.asarray(cur, float)
    d_low, d_up = _ks_via_slots(ref, cur, np.unique(ref))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert d_low == pytest.approx(expected.statistic, abs=1e-12)
    assert d_up == pytest.approx(expected.statistic, abs=1e-12)
    # one row each: scipy's p-value is nan too (round(n*m/(n+m)) = 0)
    assert ks.ks_pvalue(d_low, len(ref), len(cur)) == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15, nan_ok=True)


def test_ks_bound_brackets_exact_d_with_coarse_edges():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=3000), rng.normal(0.1, 1.2, size=2000)
    edges = sample_edges(ref[:500], 64)
    d_low, d_up = _ks_via_slots(ref, cur, edges)
    exact = stats.ks_2samp(ref, cur, method="asymp").statistic
    assert d_low <= exact + 1e-12 <= d_up + 2e-12
    inside = ks.slot_counts(ref, edges)[:-1][0::2].max() / len(ref)
    assert d_up - d_low <= inside + 1e-12  # the documented guarantee


def test_ks_undefined_when_a_side_is_all_missing():
    d_low, d_up = _ks_via_slots(np.array([np.nan, np.nan]), np.array([1.0]), np.array([]))
    assert np.isnan(d_low) and np.isnan(ks.ks_pvalue(d_low, 0, 1))


@pytest.mark.parametrize(
    "ref,cur",
    [
        (["a", "a", "b", None, "c"], ["a", "b", "b", "d", None]),  # categories present on one side only
        (["x", "x", "x"], ["x", "y"]),
        (["x"], ["x"]),  # one category, one row
    ],
)
def test_chi2_and_categorical_psi_match_scipy(ref, cur):
    from kon_ray.drift.compare import categorical_feature

    r, c = pd.Series(ref, dtype=object), pd.Series(cur, dtype=object)
    counts = lambda s: {k: int(v) for k, v in s.value_counts(dropna=False).items()}  # noqa: E731
    r_counts = {(None if pd.isna(k) else k): v for k, v in counts(r).items()}
    c_counts = {(None if pd.isna(k) else k): v for k, v in counts(c).items()}
    feature = categorical_feature("f", r_counts, c_counts, CFG)
    expected = oracle.chi2(r, c)
    assert feature["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert feature["p_value"] == pytest.approx(expected.pvalue, abs=1e-12)
    assert feature["dof"] == expected.dof
    assert feature["psi"] == pytest.approx(oracle.psi_categorical(r, c), abs=1e-12)
    n = len(r) + len(c)
    assert feature["effect_size"] == pytest.approx(np.sqrt(expected.statistic / n), abs=1e-12)


def test_chi2_direct():
    table = np.array([[10, 20, 30], [15, 15, 40]])
    stat, p, dof, v = chi2_homogeneity(table[0], table[1])
    expected = stats.chi2_contingency(table, correction=False)
    assert (stat, p, dof) == pytest.approx((expected.statistic, expected.pvalue, expected.dof), abs=1e-12)
    assert v == pytest.approx(stats.contingency.association(table, method="cramer"), abs=1e-12)


@pytest.mark.parametrize(
    "psi_value,p,expected",
    [(0.3, 0.9, "HIGH"), (0.25, 0.01, "MODERATE"), (0.1, 0.01, "MODERATE"), (0.2, 0.05, "LOW"),
     (0.2, float("nan"), "LOW"), (0.0999, 0.0, "NONE")],
)
def test_severity_rule(psi_value, p, expected):
    assert severity(psi_value, p, CFG) == expected


def test_bh_adjustment_and_flag():
    p = [0.01, 0.04, 0.03, float("nan"), 0.5]
    got = adjust_pvalues(p)
    expected = stats.false_discovery_control([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose([got[i] for i in (0, 1, 2, 4)], expected)
    assert np.isnan(got[3])
    assert overall_flag(2, 10, None, CFG) is True  # 20% > 10%
    assert overall_flag(1, 10, None, CFG) is False  # exactly 10% is not more than 10%
    assert overall_flag(0, 10, "HIGH", CFG) is True


def test_sample_edges_keep_distinct_values_and_heavy_ties():
    assert sample_edges(np.array([3.0, 1.0, 1.0, np.nan]), 8).tolist() == [-np.inf, 1.0, 3.0, np.inf]
    # infinities are never inner edges: the two ends are -inf and +inf whatever the sample holds
    assert sample_edges(np.array([np.inf, 2.0, -np.inf, np.inf]), 8).tolist() == [-np.inf, 2.0, np.inf]
    values = np.concatenate([np.full(500, 7.0), np.linspace(0, 1, 500)])
    assert 7.0 in sample_edges(values, 16)


def test_empty_collected_shape():
    codes, values = empty_collected()
    assert codes.size == 0 and values.size == 0


def test_sorted_slot_bounds_agree_with_slot_codes():
    from kon_ray.drift.summary import sorted_slot_bounds

    values = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 3.0, 5.0, np.nan])
    edges = np.array([1.0, 3.0, 4.0])
    finite = np.sort(values[~np.isnan(values)])
    counts = np.append(np.diff(sorted_slot_bounds(finite, edges)), 1)
    np.testing.assert_array_equal(counts, ks.slot_counts(values, edges))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("edges", [np.array([-1.0, 0.0, 0.5, 2.0]), np.linspace(-3, 3, 60)])
def test_psi_bin_codes_are_the_right_closed_bins_with_the_special_ones_after(dtype, edges):
    """Each value's code, whether counted edge by edge (few edges) or by binary search: pandas' right-closed cut
    for finite values (a value equal to an edge is in the bin the edge closes), then -inf, +inf, missing."""
    from kon_ray.drift.summary import psi_bin_codes

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 2, 500), edges, [-np.inf, np.inf, np.nan, np.nan]]).astype(dtype)
    codes = psi_bin_codes(values, edges)
    finite = np.isfinite(values)
    cut = pd.cut(values[finite].astype(np.float64), np.concatenate([[-np.inf], edges, [np.inf]]), right=True,
                 labels=False)
    np.testing.assert_array_equal(codes[finite], cut)
    k = len(edges) + 1
    assert list(codes[~finite]) == [k, k + 1, k + 2, k + 2]
