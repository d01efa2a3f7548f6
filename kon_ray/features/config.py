"""Config schemas for PreprocessSplit: which features a dataset derives and how records are split.

The feature list is generated from declared *families* (kon_ray/features/spec.py turns these lists and knobs into
the ordered list of feature names), so a dataset file says which raw columns play which role, and the family
knobs below say how many features each role yields. Defaults give about 240 features for a dataset with two
12-month series, ~12 numeric columns, ~8 categoricals and 2 dates (POLA); a dataset with more raw columns drops
some series families (`series_families`) to stay near that size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from kon_ray.errors import ConfigError

# Per monthly series, in the order their features appear (see spec.py for each family's definition).
SERIES_FAMILIES = (
    "lags",  # the raw months, lag01 = the record's own month
    "log_lags",  # sign(x) * log1p(|x|) of each month
    "diffs",  # month-over-month differences lag(k) - lag(k+1)
    "windows",  # rolling mean/std/min/max over the most recent w months, w in `windows`
    "slopes",  # least-squares slope over the most recent w months
    "growth",  # (lag01 - lag(1+k)) / |lag(1+k)| for k in `growth_lags`
    "seasonality",  # amplitude, coefficient of variation, summer/winter ratio, peak and trough calendar month
    "quality",  # counts of missing (NaN/inf), negative and zero months
    "shares",  # each month's share of the series' total over all months, and recent_share = mean03 / mean_all
)
WINDOW_STATS = ("mean", "std", "min", "max")


@dataclass(frozen=True)
class FeatureConfig:
    """Which features to derive from a dataset's raw columns (declared per dataset in conf/dataset/*.yaml)."""

    monthly_series: List[str] = field(default_factory=list)  # prefixes, e.g. kwh_m -> kwh_m01..kwh_m12
    numeric: List[str] = field(default_factory=list)  # int64/float64 columns, and bool flags (-> 0/1)
    categorical: List[str] = field(default_factory=list)  # ordinal code (0 = unknown) + train frequency
    dates: List[str] = field(default_factory=list)  # months before record_date (tenure), year, month, invalid flag
    ratios: List[List[str]] = field(default_factory=list)  # [numerator_prefix, denominator_prefix] series pairs
    series_months: int = 12  # months per series: <prefix>01 (oldest) .. <prefix>12 (the record's own month)
    series_families: List[str] = field(default_factory=lambda: list(SERIES_FAMILIES))
    windows: List[int] = field(default_factory=lambda: [3, 6, 12])
    growth_lags: List[int] = field(default_factory=lambda: [1, 3, 6, 11])
    summer_months: List[int] = field(default_factory=lambda: [6, 7, 8])
    winter_months: List[int] = field(default_factory=lambda: [12, 1, 2])
    clip_quantiles: Optional[List[float]] = field(default_factory=lambda: [0.01, 0.99])  # null = no winsorizing
    impute: bool = True  # NaN in value features -> the train median (the missing flags keep the information)
    max_categories: int = 200  # vocabulary cap per categorical: rarer values get the unknown code
    fit_sample_rows: int = 100_000  # train rows the quantiles/medians come from (exact below this)
    batch_rows: int = 32_768  # rows per map_batches call: bounds each worker's memory

    def __post_init__(self) -> None:
        unknown = [f for f in self.series_families if f not in SERIES_FAMILIES]
        if unknown:
            raise ConfigError(
                f"features.series_families: unknown family {unknown[0]!r}; known: {', '.join(SERIES_FAMILIES)}"
            )
        if self.series_months < 2:
            raise ConfigError(f"features.series_months must be >= 2, got {self.series_months}")
        for key in ("windows", "growth_lags"):
            for value in getattr(self, key):
                top = self.series_months if key == "windows" else self.series_months - 1
                if not 1 <= value <= top:
                    raise ConfigError(f"features.{key}: {value} is outside 1..{top} (series_months)")
        for key in ("summer_months", "winter_months"):
            for month in getattr(self, key):
                if not 1 <= month <= 12:
                    raise ConfigError(f"features.{key}: {month} is not a calendar month 1..12")
        for pair in self.ratios:
            if len(pair) != 2:
                raise ConfigError(f"features.ratios: each entry is [numerator, denominator], got {list(pair)}")
            for prefix in pair:
                if prefix not in self.monthly_series:
                    raise ConfigError(f"features.ratios: {prefix!r} is not one of features.monthly_series")
        if self.clip_quantiles is not None:
            if len(self.clip_quantiles) != 2 or not (0.0 <= self.clip_quantiles[0] < self.clip_quantiles[1] <= 1.0):
                raise ConfigError(
                    f"features.clip_quantiles must be [low, high] with 0 <= low < high <= 1, got {self.clip_quantiles}"
                )
        for key in ("max_categories", "fit_sample_rows", "batch_rows"):
            if getattr(self, key) < 1:
                raise ConfigError(f"features.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("monthly_series", "numeric", "categorical", "dates"):
            values = list(getattr(self, key))
            if len(set(values)) != len(values):
                raise ConfigError(f"features.{key} names a column twice")


@dataclass(frozen=True)
class SplitConfig:
    """Reference vs current by date window, then train/test within the reference, stratified by the target."""

    current_months: int = 6  # the last N months of records are "current" (what drift checks and inference score)
    reference_months: Optional[int] = None  # the N months before the current window; None = all earlier months
    test_fraction: float = 0.2
    train_per_class: Optional[int] = None  # balanced sampling: N records per class for train (None = all)
    test_per_class: Optional[int] = None

    def __post_init__(self) -> None:
        if self.current_months < 1:
            raise ConfigError(f"split.current_months must be >= 1, got {self.current_months}")
        if self.reference_months is not None and self.reference_months < 1:
            raise ConfigError(f"split.reference_months must be >= 1 or null, got {self.reference_months}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"split.test_fraction must be in (0, 1), got {self.test_fraction}")
        for key in ("train_per_class", "test_per_class"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"split.{key} must be >= 1 or null, got {value}")
