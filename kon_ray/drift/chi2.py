"""Pearson's chi-squared test of homogeneity on the 2 x K table of reference and current category counts.

Missing is one of the K categories. No continuity correction: the same statistic, degrees of freedom and p-value
as `scipy.stats.chi2_contingency(table, correction=False)`. Effect size: Cramer's V = sqrt(chi2 / (N * (min(2,
K) - 1))), which at millions of rows stays meaningful where the p-value does not.
"""

from __future__ import annotations

import numpy as np


def chi2_homogeneity(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float, int, float]:
    """(statistic, p-value, dof, Cramer's V) for aligned category counts; categories absent on both sides must
    not be passed (scipy refuses a zero expected count). NaN when either side has no rows."""
    table = np.vstack([ref_counts, cur_counts]).astype(np.float64)
    total = table.sum()
    rows = table.sum(axis=1)
    if rows.min() == 0:
        return float("nan"), float("nan"), 0, float("nan")
    dof = table.shape[1] - 1
    if dof == 0:  # one category: both sides identical by construction (scipy returns 0 and p = 1)
        return 0.0, 1.0, 0, 0.0
    from scipy.stats import chi2 as chi2_dist  # scipy.stats is slow to import: the reports and --help need no test

    expected = np.outer(rows, table.sum(axis=0)) / total
    stat = float(np.sum((table - expected) ** 2 / expected))
    p_value = float(chi2_dist.sf(stat, dof))
    cramers_v = float(np.sqrt(stat / total))  # min(2, K) - 1 = 1 for a 2 x K table
    return stat, p_value, dof, cramers_v
