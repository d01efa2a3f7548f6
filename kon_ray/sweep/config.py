"""Config schema of a sweep's own keys, `sweep.*` (`python -m kon_ray.sweep`; README "Sweeps")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from kon_ray.errors import ConfigError

SEARCHES = ("grid", "optuna")
SCHEDULERS = ("asha", "none")
POPULATIONS = ("domestic", "industrial")


@dataclass(frozen=True)
class SweepConfig:
    search: str = "grid"  # grid: every point of the swept lists/ranges; optuna: TPE over ranges, sweep.trials points
    trials: int = 0  # optuna: trials per population (required); grid: must stay 0 (the grid sets the count)
    seed: Optional[int] = None  # the search's seed; null: the run's `seed`
    max_concurrent: int = 0  # trials at once; 0: the cluster's CPUs // sweep.cpus_per_trial
    cpus_per_trial: int = 1  # CPUs each trial holds = its xgboost nthread
    scheduler: str = "asha"  # asha: stop hopeless trials early (Ray Tune ASHAScheduler); none: every trial runs out
    grace_period: int = 10  # ASHA: boosting rounds every trial gets before it can be stopped
    reduction_factor: float = 3.0  # ASHA: at each rung only the best 1/reduction_factor go on
    populations: List[str] = field(default_factory=lambda: list(POPULATIONS))  # a trial per population and point
    # a trial that failed (its process or node lost, or an error) runs again up to this many times (Ray Tune's
    # FailureConfig.max_failures): a lost node costs its trials a restart, not the sweep; an error in a trial fails
    # it again, quickly, and it is reported FAILED with its line
    retries: int = 1
    dir: Optional[str] = None  # the sweep folder; null: multirun/<dataset>/<date>_<time>
    # set by the submitter of a sweep run as a Ray Job (kon_ray/sweep/job.py): the user's unswept overrides,
    # shell-quoted, so that the printed reproduce lines are the user's command (cluster=ray ...), not the job's
    submitted_overrides: Optional[str] = None

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ConfigError(f"sweep.search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"sweep.scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.search == "optuna" and self.trials < 1:
            raise ConfigError("sweep.search=optuna needs a budget: set sweep.trials=N (trials per population)")
        if self.search == "grid" and self.trials:
            raise ConfigError("sweep.trials is the budget of sweep.search=optuna; a grid runs every point")
        if self.max_concurrent < 0:
            raise ConfigError(f"sweep.max_concurrent must be >= 0 (0: from the cluster's CPUs), got "
                              f"{self.max_concurrent}")
        if self.cpus_per_trial < 1:
            raise ConfigError(f"sweep.cpus_per_trial must be >= 1, got {self.cpus_per_trial}")
        if self.retries < 0:
            raise ConfigError(f"sweep.retries must be >= 0, got {self.retries}")
        if self.grace_period < 1:
            raise ConfigError(f"sweep.grace_period must be >= 1, got {self.grace_period}")
        if self.reduction_factor <= 1:
            raise ConfigError(f"sweep.reduction_factor must be > 1, got {self.reduction_factor}")
        unknown = [p for p in self.populations if p not in POPULATIONS]
        if unknown or not self.populations:
            raise ConfigError(f"sweep.populations: pick from {', '.join(POPULATIONS)}, got {list(self.populations)}")
