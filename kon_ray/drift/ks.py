"""Two-sample Kolmogorov-Smirnov test from mergeable bin counts, with a stated bound.

D = sup_x |F_ref(x) - F_cur(x)| over the non-missing values, and its two-sided asymptotic p-value exactly as
`scipy.stats.ks_2samp(ref, cur, method="asymp")` computes it from D, n and m:
`kstwo.sf(D, round(n * m / (n + m)))`.

Each side is counted into "slots" on one sorted set of reference edges e_0 < ... < e_{K-1} (actual reference
values): slot 2k holds the values strictly inside (e_{k-1}, e_k) (e_{-1} = -inf, e_K = +inf), slot 2k+1 the
values equal to e_k, and the last slot the missing values. Both empirical CDFs are then known exactly at every
edge and just below each edge (the largest pooled value inside a bin is a data point where both CDFs have taken
in the whole bin), which gives a lower bound D_low that is an attained value of the statistic. Inside a bin,
F_ref lies in [R0, R1] and F_cur in [C0, C1] (the CDFs at the bin's ends), so |F_ref - F_cur| <= max(R1 - C0,
C1 - R0): the upper bound D_up. D_up - D_low <= the largest reference mass strictly inside one bin, about
1/drift.ks_bins; it is 0 (D exact) when every reference value is an edge (few distinct values) and, for any
current data, outside the reference range. The statistic reported is D_low, with D_up as `ks_upper`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from kon_ray.drift.config import DriftConfig


def slot_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's slot (see module docstring); missing values get the last slot, 2 * len(edges) + 1."""
    values = np.asarray(values, dtype=np.float64)
    k = len(edges)
    idx = np.searchsorted(edges, values, side="left")
    # A NaN sentinel past the last edge: one gather, no masks (x == NaN is never true, also for x = NaN).
    padded = np.append(np.asarray(edges, dtype=np.float64), np.nan)
    codes: np.ndarray = 2 * idx + (padded[idx] == values)
    codes[np.isnan(values)] = 2 * k + 1  # NaN sorts past every edge; it is missing, not above the range
    return codes


def slot_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(slot_codes(values, edges), minlength=2 * len(edges) + 2).astype(np.int64)


def ks_from_slots(ref_slots: np.ndarray, cur_slots: np.ndarray) -> tuple[float, float]:
    """(D_low, D_up) from two slot-count vectors on the same edges; NaN when either side has no values."""
    ref = np.asarray(ref_slots[:-1], dtype=np.float64)  # the last slot is missing values
    cur = np.asarray(cur_slots[:-1], dtype=np.float64)
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0:
        return float("nan"), float("nan")
    fr = np.cumsum(ref) / n  # CDF after each slot
    fc = np.cumsum(cur) / m
    d_low = float(np.max(np.abs(fr - fc)))
    # Inside bin k (slot 2k): F_ref in [fr before, fr after], likewise F_cur.
    fr_before = np.concatenate(([0.0], fr))[0::2]
    fc_before = np.concatenate(([0.0], fc))[0::2]
    fr_after, fc_after = fr[0::2], fc[0::2]
    d_up = float(max(d_low, np.max(fr_after - fc_before), np.max(fc_after - fr_before)))
    return d_low, d_up


def ks_pvalue(d: float, n: int, m: int) -> float:
    """scipy's ks_2samp(method="asymp") two-sided p-value for statistic d and sample sizes n, m."""
    if not np.isfinite(d) or n == 0 or m == 0:
        return float("nan")
    from scipy.stats import kstwo  # scipy.stats is slow to import: the reports and --help need no test

    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    return float(np.clip(kstwo.sf(d, np.round(en)), 0.0, 1.0))


def bound_summary(features: Sequence[Mapping[str, Any]], cfg: DriftConfig) -> Dict[str, Any]:
    """The report summary's KS entries, over the numeric features: the widest bound ks_upper - statistic, and the
    features whose bound is wider than drift.ks_tolerance."""
    bounded = [f for f in features if f["ks_upper"] is not None]
    return {"ks_bound_max": max((f["ks_upper"] - f["statistic"] for f in bounded), default=0.0),
            "ks_bound_exceeded": [f["name"] for f in bounded if f["ks_upper"] - f["statistic"] > cfg.ks_tolerance]}


def bound_lines(summary: Mapping[str, Any]) -> List[str]:
    """The bound in drift_summary.txt."""
    lines = [f"KS: exact D lies within {summary['ks_bound_max']:.1e} above the reported statistic for every numeric"
             " feature"]
    if summary["ks_bound_exceeded"]:
        lines.append(f"KS bound wider than the tolerance for: {', '.join(summary['ks_bound_exceeded'])}")
    return lines


def bound_html(summary: Mapping[str, Any]) -> List[str]:
    """The bound in drift_report.html's header."""
    return [f"KS statistic exact to within {summary['ks_bound_max']:.1e} (reported D &le; exact D &le; D + bound)"]
