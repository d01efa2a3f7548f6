"""Severity per feature, multiple-testing adjustment and the overall flag.

Severity (the original Kon rule): PSI > psi_high is HIGH; psi_moderate <= PSI <= psi_high is MODERATE when the
test's raw p-value is below p_value and LOW otherwise; PSI < psi_moderate is NONE. A feature has drifted when it
is MODERATE or HIGH. The overall flag is raised when more than drift_share of the analysed features drifted, or
when prediction drift is HIGH. Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control) are
reported beside the raw ones; the severity rule keeps the raw p-value, as the original did.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from kon_ray.drift.config import DriftConfig

SEVERITIES = ("NONE", "LOW", "MODERATE", "HIGH")
DRIFTED = ("MODERATE", "HIGH")


def severity(psi_value: float, p_value: float, cfg: DriftConfig) -> str:
    if psi_value > cfg.psi_high:
        return "HIGH"
    if psi_value >= cfg.psi_moderate:
        # An undefined p-value (a side with no values) is never "significant".
        return "MODERATE" if (not math.isnan(p_value) and p_value < cfg.p_value) else "LOW"
    return "NONE"


def adjust_pvalues(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values over the defined ones; NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    defined = ~np.isnan(p)
    if defined.any():
        from scipy.stats import false_discovery_control  # scipy.stats is slow to import: pages and --help need no test

        out[defined] = false_discovery_control(p[defined], method="bh")
    return out.tolist()


def overall_flag(n_drifted: int, n_features: int, prediction_severity: str | None, cfg: DriftConfig) -> bool:
    share = n_drifted / n_features if n_features else 0.0
    return share > cfg.drift_share or prediction_severity == "HIGH"
