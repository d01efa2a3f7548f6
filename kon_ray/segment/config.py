"""Config schema for segmentation: estrato rules and k-means cluster grouping (declared per dataset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from kon_ray.errors import ConfigError


@dataclass(frozen=True)
class SegmentConfig:
    estrato_column: str = ""  # the raw column estrato is assigned from
    estrato_thresholds: List[float] = field(default_factory=list)  # 5 ascending cut points -> estrato 1..6
    cluster_features: List[str] = field(default_factory=list)
    clusters: int = 4
    cluster_log_scale: bool = True  # sign(x)*log1p(|x|) before standardizing: money and usage are heavy-tailed
    # Lloyd's k-means from a seeded k-means++ start: at most this many iterations; it stops earlier, converged, once
    # the centres' total squared move in one iteration is <= kmeans_tolerance x the standardized data's mean feature
    # variance (scikit-learn's rule and default tol; kon_ray/segment/kmeans.py)
    kmeans_iterations: int = 100
    kmeans_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        if self.estrato_thresholds and len(self.estrato_thresholds) != 5:
            raise ConfigError(f"segment.estrato_thresholds needs 5 cut points, got {len(self.estrato_thresholds)}")
        if list(self.estrato_thresholds) != sorted(self.estrato_thresholds):
            raise ConfigError("segment.estrato_thresholds must be ascending")
        if self.clusters < 1:
            raise ConfigError(f"segment.clusters must be >= 1, got {self.clusters}")
        if self.kmeans_iterations < 1:
            raise ConfigError(f"segment.kmeans_iterations must be >= 1, got {self.kmeans_iterations}")
        if self.kmeans_tolerance < 0:
            raise ConfigError(f"segment.kmeans_tolerance must be >= 0, got {self.kmeans_tolerance}")
