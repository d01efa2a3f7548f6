"""Config schema for the XGBoost segmentation models (conf/model/)."""

from __future__ import annotations

from dataclasses import dataclass

from kon_ray.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    max_depth: int = 6
    eta: float = 0.1
    num_boost_round: int = 100
    early_stopping_rounds: int = 10
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    tree_method: str = "hist"
    max_bin: int = 256
    validation_fraction: float = 0.1  # of train, for early stopping
    checkpoint_frequency: int = 10  # rounds between Ray Train checkpoints
    min_rows_per_class: int = 5
    max_failures: int = 2  # Ray Train restarts after a lost worker, resuming from the last checkpoint
    # a population with fewer records trains in one process (no Ray Train set-up); 0: always Ray Train
    distributed_min_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_depth < 1:
            raise ConfigError(f"model.max_depth must be >= 1, got {self.max_depth}")
        if not 0.0 < self.eta <= 1.0:
            raise ConfigError(f"model.eta must be in (0, 1], got {self.eta}")
        if self.num_boost_round < 1:
            raise ConfigError(f"model.num_boost_round must be >= 1, got {self.num_boost_round}")
        if self.early_stopping_rounds < 0:
            raise ConfigError(f"model.early_stopping_rounds must be >= 0, got {self.early_stopping_rounds}")
        for key in ("subsample", "colsample_bytree"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"model.{key} must be in (0, 1], got {getattr(self, key)}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"model.validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.max_failures < 0:
            raise ConfigError(f"model.max_failures must be >= 0, got {self.max_failures}")
        if self.distributed_min_rows < 0:
            raise ConfigError(
                f"model.distributed_min_rows must be >= 0 (0: always Ray Train), got {self.distributed_min_rows}"
            )
        if self.checkpoint_frequency < 1:
            raise ConfigError(f"model.checkpoint_frequency must be >= 1, got {self.checkpoint_frequency}")
