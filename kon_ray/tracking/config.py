"""Config schema for MLflow tracking (conf/tracking/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kon_ray.errors import ConfigError

BEST_MODES = ("max", "min")


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory
    experiment: str = "kon_ray"
    run_name: Optional[str] = None  # None: <dataset>-<run folder name> (one per run), or <dataset>-job<N> in a sweep
    log_models: bool = True  # log each population's model with mlflow.xgboost (input example + signature)
    input_example_rows: int = 5  # rows of the test features stored with each logged model
    register_models: bool = False  # register <dataset>-<population> after a successful run
    # sweeps: <population>/<best_metric> names the best configuration per population. The default ranks by the
    # validation split the train stage carves out of train (test/macro_f1 with best_mode=max would pick on the
    # test split, whose score is then no longer an unbiased estimate).
    best_metric: str = "validation_mlogloss"  # train returns <population>/validation_mlogloss (its best round)
    best_mode: str = "min"  # max | min

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            raise ConfigError("tracking.experiment must not be empty")
        if self.best_mode not in BEST_MODES:
            raise ConfigError(f"tracking.best_mode must be one of {', '.join(BEST_MODES)}, got {self.best_mode!r}")
        if not self.best_metric.strip():
            raise ConfigError("tracking.best_metric must not be empty (e.g. validation_mlogloss)")
        if self.input_example_rows < 1:
            raise ConfigError(f"tracking.input_example_rows must be >= 1, got {self.input_example_rows}")


@dataclass(frozen=True)
class DriftTrackingConfig:
    """`tracking.*` of the standalone drift check (conf/drift_standalone.yaml): off unless `uri` is set."""

    uri: Optional[str] = None  # None: not tracked; an MLflow URI (http(s)://, sqlite:///, arn:aws:sagemaker:...)
    experiment: Optional[str] = None  # None: drift-<first 12 hex digits of the reference fingerprint>
    run_name: Optional[str] = None  # None: <current data's name>-<time>

    def __post_init__(self) -> None:
        if self.uri is not None and not self.uri.strip():
            raise ConfigError("tracking.uri must not be empty: give an MLflow URI, or leave it null (not tracked)")
        if self.experiment is not None and not self.experiment.strip():
            raise ConfigError("tracking.experiment must not be empty: give a name, or leave it null (named from"
                              " the reference's fingerprint)")
        if self.uri is None and (self.experiment is not None or self.run_name is not None):
            key = "tracking.experiment" if self.experiment is not None else "tracking.run_name"
            raise ConfigError(f"{key} is set but tracking.uri is not: set tracking.uri=URI to track the check")
