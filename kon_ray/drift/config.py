"""Config schema for DriftCheck."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from kon_ray.errors import ConfigError

PREDICTION_MODEL = re.compile(r"[1-9][0-9]*|@[A-Za-z0-9_-]+")  # a registered version, or @alias


@dataclass(frozen=True)
class DriftConfig:
    psi_bins: int = 10
    psi_epsilon: float = 1e-4
    psi_moderate: float = 0.1  # PSI >= this (and p < p_value) is MODERATE, below it NONE
    psi_high: float = 0.25  # PSI > this is HIGH
    p_value: float = 0.05
    drift_share: float = 0.1  # overall flag when more than this share of features drifted
    fail_on_drift: bool = False
    column_types: Dict[str, str] = field(default_factory=dict)  # override: column -> numeric | categorical
    exclude: List[str] = field(default_factory=list)
    # calendar features (record month/quarter, a date's year and month) differ between windows by construction;
    # the pipeline's drift stage skips them unless this is true
    calendar_features: bool = False
    # KS from per-shard counts: reference bins whose edges are sampled reference values (every distinct value
    # when there are at most ks_bins of them). D is exact to within the largest reference mass strictly inside
    # one bin, about 1/ks_bins; the report states the bound per feature.
    ks_bins: int = 2048
    ks_tolerance: float = 1e-3  # the report flags a feature whose KS bound is wider than this
    sample_rows: int = 200_000  # reference rows sampled to place the KS bins (never used for a statistic)
    plots: int = 8  # distribution plots in drift_report.html, for the most drifted features
    # the pipeline's DriftCheck scores both windows with each population's registered model `<dataset>-<population>`
    # for prediction drift: null = its latest version, "3" = version 3, "@champion" = the version an alias points at
    prediction_model: Optional[str] = None
    # issue 30: each analysed feature's PSI split into segment mix and within-segment change, per segment column
    # (kon_ray/drift/attribution.py); the joint tables are counted in the same pass. Empty: no attribution.
    segment_columns: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.psi_bins < 2:
            raise ConfigError(f"drift.psi_bins must be >= 2, got {self.psi_bins}")
        if not 0.0 < self.psi_epsilon < 1.0:
            raise ConfigError(f"drift.psi_epsilon must be in (0, 1), got {self.psi_epsilon}")
        if not 0.0 <= self.psi_moderate <= self.psi_high:
            raise ConfigError(
                f"drift thresholds out of order: need 0 <= drift.psi_moderate ({self.psi_moderate})"
                f" <= drift.psi_high ({self.psi_high})"
            )
        if not 0.0 < self.p_value < 1.0:
            raise ConfigError(f"drift.p_value must be in (0, 1), got {self.p_value}")
        if not 0.0 <= self.drift_share <= 1.0:
            raise ConfigError(f"drift.drift_share must be in [0, 1], got {self.drift_share}")
        if self.ks_bins < 16:
            raise ConfigError(f"drift.ks_bins must be >= 16, got {self.ks_bins}")
        if not 0.0 < self.ks_tolerance < 1.0:
            raise ConfigError(f"drift.ks_tolerance must be in (0, 1), got {self.ks_tolerance}")
        if self.sample_rows < 1000:
            raise ConfigError(f"drift.sample_rows must be >= 1000, got {self.sample_rows}")
        if self.plots < 0:
            raise ConfigError(f"drift.plots must be >= 0, got {self.plots}")
        if self.prediction_model is not None and not PREDICTION_MODEL.fullmatch(str(self.prediction_model)):
            raise ConfigError(
                "drift.prediction_model must be null (the latest registered version), a version number (3) or an"
                f" alias (@champion), got {self.prediction_model!r}"
            )
        for column, kind in self.column_types.items():
            if kind not in ("numeric", "categorical"):
                raise ConfigError(f"drift.column_types.{column} must be numeric or categorical, got {kind!r}")
