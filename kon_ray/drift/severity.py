"""Severity per feature, multiple-testing adjustment and the overall flag.

Severity (the original Kon rule), read from the statistic registry (kon_ray/drift/statistics.py): the band
statistic grades its value (PSI > psi_high is HIGH, psi_moderate <= PSI <= psi_high MODERATE, PSI < psi_moderate
NONE); inside the MODERATE band the feature's test grades its raw p-value, MODERATE below p_value and LOW
otherwise. A feature has drifted when it is MODERATE or HIGH. The overall flag is raised when more than
drift_share of the analysed features drifted, or when prediction drift is HIGH. Benjamini-Hochberg adjusted
p-values (scipy.stats.false_discovery_control) are reported beside the raw ones; the severity rule keeps the raw
p-value, as the original did.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kon_ray.drift import statistics
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.summary import NUMERIC

SEVERITIES = ("NONE", "LOW", "MODERATE", "HIGH")
DRIFTED = ("MODERATE", "HIGH")


def band(value: float, cfg: DriftConfig) -> str:
    """The band statistic's (PSI's) grade: NONE, MODERATE or HIGH, the bands the drift history draws."""
    return statistics.band_statistic().graded(value, cfg)


def severity(psi_value: float, p_value: float, cfg: DriftConfig, kind: str = NUMERIC) -> str:
    """`p_value`: the feature's test's (the test of its `kind`), which decides inside the MODERATE band."""
    grade = band(psi_value, cfg)
    return statistics.kind_test(kind).graded(p_value, cfg) if grade == "MODERATE" else grade


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
