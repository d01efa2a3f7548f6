"""Config schema for MLflow tracking (conf/tracking/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "kon_ray"
    register_models: bool = False
    best_metric: str = "macro_f1"  # sweep summary: the metric that names the best configuration
    best_mode: str = "max"
