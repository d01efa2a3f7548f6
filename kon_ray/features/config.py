"""Config schemas for PreprocessSplit: which features a dataset derives and how records are split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from kon_ray.errors import ConfigError


@dataclass(frozen=True)
class FeatureConfig:
    """Which features to derive from a dataset's raw columns (declared per dataset in conf/dataset/*.yaml)."""

    monthly_series: List[str] = field(default_factory=list)  # prefixes of the monthly series, e.g. kwh_m -> kwh_m01..
    numeric: List[str] = field(default_factory=list)
    categorical: List[str] = field(default_factory=list)
    dates: List[str] = field(default_factory=list)


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
