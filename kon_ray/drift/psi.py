"""Population Stability Index.

Numeric features: B bins (`drift.psi_bins`) whose interior edges are the reference quantiles at i/B, i = 1..B-1,
with numpy's default linear interpolation (`np.quantile(ref, i/B)`), duplicate edges removed; the outer bins are
open to -inf and +inf and every bin is right-closed, `(e[k-1], e[k]]`, as in `pandas.cut`. Missing values (null
or NaN) form one extra bin in both distributions. Categorical features: the union of reference and current
categories, missing as its own category.

Proportions are counts over all rows (missing included); a proportion that is exactly zero is replaced by
epsilon (`drift.psi_epsilon`) so the logarithm is defined. PSI = sum_k (p_cur - p_ref) * ln(p_cur / p_ref).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, epsilon: float) -> float:
    """PSI of two aligned count vectors (same bins, same order), each normalised by its own total."""
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"psi: count vectors differ in length ({ref.size} vs {cur.size})")
    p_ref = ref / ref.sum()
    p_cur = cur / cur.sum()
    # Only empty bins are floored: a small but real proportion keeps its value (Evidently does the same).
    p_ref = np.where(p_ref == 0.0, epsilon, p_ref)
    p_cur = np.where(p_cur == 0.0, epsilon, p_cur)
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def band(value: float, limits: Mapping[str, float]) -> str:
    """PSI's severity band: above psi_high HIGH, from psi_moderate up MODERATE, below NONE."""
    if value > limits["psi_high"]:
        return "HIGH"
    return "MODERATE" if value >= limits["psi_moderate"] else "NONE"


def quantile_ranks(n: int, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The order statistics (0-based ranks lo, hi) and weights numpy's linear np.quantile(x, i/B) combines.

    For n sorted values, quantile q sits at virtual index (n - 1) * q; numpy takes x[floor] and x[floor + 1]
    (clipped to n - 1) and interpolates with the fractional part (numpy's `_quantile`/`_get_indexes`).
    """
    q = np.arange(1, bins) / bins
    virtual = (n - 1) * q
    lo = np.floor(virtual).astype(np.int64)
    gamma = virtual - lo
    hi = np.minimum(lo + 1, n - 1)
    lo = np.minimum(lo, n - 1)
    return lo, hi, gamma


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own interpolation (`_lerp`), bit for bit: from b downwards when t >= 0.5, for monotonicity."""
    a, b, t = (np.asarray(v, dtype=np.float64) for v in (a, b, t))
    diff = b - a
    out: np.ndarray = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return out


def edges_from_order_stats(lo_values: np.ndarray, hi_values: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """The PSI interior edges: interpolated quantiles with duplicates removed (sorted)."""
    return np.unique(lerp(lo_values, hi_values, gamma))

