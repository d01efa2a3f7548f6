"""Config schemas of the performance estimate: the standalone command's (`performance.*`,
conf/performance_standalone.yaml) and the pipeline's (`performance.*` of the run config, InferenceReporting)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from kon_ray.errors import ConfigError


@dataclass(frozen=True)
class PerformanceConfig:
    label_column: str = MISSING  # the true class; required in the reference, optional (or partly null) in current
    probability_prefix: str = MISSING  # columns PREFIX<class>: one per class, the class name is the suffix
    chunk_column: Optional[str] = None  # one chunk per value of this column (e.g. a month), in sorted order
    chunk_rows: Optional[int] = None  # or chunks of this many rows, in row order; neither: the whole window
    segment_columns: List[str] = field(default_factory=list)  # an estimate per value of each of these columns
    bins: int = 20  # score bins of [0, 1] for the calibration and the unseen-region guard
    unseen_threshold: float = 0.05  # above this share of unseen rows, an estimate is marked unreliable
    sum_tolerance: float = 1e-3  # a row's probabilities must sum to 1 within this

    def __post_init__(self) -> None:
        if self.chunk_column is not None and self.chunk_rows is not None:
            raise ConfigError("give at most one of performance.chunk_column and performance.chunk_rows")
        if self.chunk_rows is not None and self.chunk_rows < 1:
            raise ConfigError(f"performance.chunk_rows must be >= 1, got {self.chunk_rows}")
        if self.bins < 2:
            raise ConfigError(f"performance.bins must be >= 2, got {self.bins}")
        if not 0.0 <= self.unseen_threshold <= 1.0:
            raise ConfigError(f"performance.unseen_threshold must be in [0, 1], got {self.unseen_threshold}")
        if not 0.0 < self.sum_tolerance < 1.0:
            raise ConfigError(f"performance.sum_tolerance must be in (0, 1), got {self.sum_tolerance}")


@dataclass(frozen=True)
class InferPerformanceConfig:
    """InferenceReporting's estimate (README "Performance without labels"): each population's model calibrated on the
    test split, estimated on the current split per estrato, cluster and month of the dataset's date column."""

    enabled: bool = True  # false: the stage scores and reports without the estimate (and without its cost)
    bins: int = 20  # score bins of [0, 1] for the calibration and the unseen-region guard
    unseen_threshold: float = 0.05  # above this share of unseen rows, an estimate is marked unreliable

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ConfigError(f"performance.bins must be >= 2, got {self.bins}")
        if not 0.0 <= self.unseen_threshold <= 1.0:
            raise ConfigError(f"performance.unseen_threshold must be in [0, 1], got {self.unseen_threshold}")
