"""The trials of one population on Ray Tune: a Tuner over `kon_ray.sweep.trial.run_trial`, each trial holding
`sweep.cpus_per_trial` CPUs (its xgboost threads), at most `max_concurrent` at once, an ASHAScheduler on validation
mlogloss by boosting round, and for `sweep.search=optuna` an OptunaSearch (TPE, seeded) proposing the points.

One Tuner per population: ASHA compares trials at equal rounds, and one population's mlogloss says nothing about the
other's (the industrial population is harder: it would be pruned for being industrial). What comes back is a plain
record per trial (`TrialRecord`-shaped dicts), read from Tune's results on the driver; nothing here logs to MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from kon_ray import storage
from kon_ray.sweep.config import SweepConfig
from kon_ray.sweep.space import INTERVAL, RANGE, Dimension
from kon_ray.sweep.trial import FINISHED_FLAG, METRIC, ROUND, read_finished, run_trial, trial_folder
from kon_ray.tracking.common import one_line

log = logging.getLogger(__name__)

FINISHED, PRUNED, FAILED = "FINISHED", "PRUNED", "FAILED"


def default_concurrency(cluster_cpus: float, cpus_per_trial: int) -> int:
    """`sweep.max_concurrent=0`: as many trials as the cluster's CPUs hold, at least one."""
    return max(1, int(cluster_cpus) // max(1, cpus_per_trial))


def asha_rule(sweep: SweepConfig) -> str:
    return (f"ASHA: validation mlogloss not in the best 1/{sweep.reduction_factor:g} of the trials at the same "
            f"round (rungs from round {sweep.grace_period}, x{sweep.reduction_factor:g})")


def tune_space(dimensions: Sequence[Dimension]) -> Dict[str, Any]:
    """Ray Tune's search space for OptunaSearch: an interval is uniform (log-uniform when tagged `log`; integers
    for an int key), a range of integers step 1 is randint, every other list a categorical choice."""
    from ray import tune

    space: Dict[str, Any] = {}
    for dim in dimensions:
        if dim.kind == INTERVAL and dim.integer:
            space[dim.key] = tune.randint(math.ceil(dim.low), math.floor(dim.high) + 1)
        elif dim.kind == INTERVAL:
            space[dim.key] = tune.loguniform(dim.low, dim.high) if dim.log else tune.uniform(dim.low, dim.high)
        elif dim.kind == RANGE and dim.integer and list(dim.values) == list(range(dim.values[0], dim.values[-1] + 1)):
            space[dim.key] = tune.randint(dim.values[0], dim.values[-1] + 1)
        else:
            space[dim.key] = tune.choice(list(dim.values))
    return space


def searcher(dimensions: Sequence[Dimension], seed: int):
    """The seeded TPE searcher (Optuna) over the dimensions."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space=tune_space(dimensions), metric=METRIC, mode="min", seed=seed)


def tune_population(population: str, data: Dict[str, Any], setup: Dict[str, Any], sweep: SweepConfig,
                    points: Optional[List[Dict[str, Any]]], dimensions: Sequence[Dimension], *, max_rounds: int,
                    max_concurrent: int, storage_path: str, seed: int) -> List[Dict[str, Any]]:
    """Run one population's trials; a record per trial, in grid order (search: in the order they started)."""
    from ray import tune
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, setup=setup),
                                    {"cpu": sweep.cpus_per_trial})
    scheduler = ASHAScheduler(time_attr=ROUND, metric=METRIC, mode="min", max_t=max_rounds + 1,
                              grace_period=sweep.grace_period, reduction_factor=sweep.reduction_factor) \
        if sweep.scheduler == "asha" else FIFOScheduler()
    # with ASHA the scheduler holds the metric; without, TuneConfig does (the searcher needs it)
    metric = {} if sweep.scheduler == "asha" else {"metric": METRIC, "mode": "min"}
    if points is not None:  # grid
        param_space: Dict[str, Any] = {"point": tune.grid_search([{"index": i, **p} for i, p in enumerate(points)])}
        tune_config = TuneConfig(num_samples=1, max_concurrent_trials=max_concurrent, reuse_actors=True,
                                 scheduler=scheduler, **metric)
    else:
        param_space = {}
        tune_config = TuneConfig(num_samples=sweep.trials, max_concurrent_trials=max_concurrent, reuse_actors=True,
                                 scheduler=scheduler, search_alg=searcher(dimensions, seed), **metric)
    filesystem, path = storage.filesystem(storage_path)  # Tune's folder in the sweep folder, local or on S3
    tuner = Tuner(trainable, param_space=param_space, tune_config=tune_config,
                  run_config=RunConfig(name=population, storage_path=path, storage_filesystem=filesystem, verbose=0,
                                       failure_config=FailureConfig(max_failures=sweep.retries)))
    # Ctrl-C: Tune's own handler would end the experiment and return its trials as if they had ended; kon_ray's is
    # a KeyboardInterrupt (the sweep exits 130, its parent run KILLED; the trials' actors end with the driver)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    results = tuner.fit()
    records = [_record(population, result, setup, sweep) for result in results]
    if points is not None:
        records.sort(key=lambda r: r["index"])
    else:
        records.sort(key=lambda r: (r["started_at"] or math.inf, r["trial_id"]))
        for i, record in enumerate(records):
            record["index"] = i
    return records


def _record(population: str, result: Any, setup: Dict[str, Any], sweep: SweepConfig) -> Dict[str, Any]:
    """One trial's plain record from Tune's result: FINISHED (trained to its end), PRUNED (stopped by ASHA at its
    last reported round) or FAILED (with the error's one line)."""

    config = _params(result)
    point = dict(config.get("point", config))
    index = point.pop("index", None)
    frame = result.metrics_dataframe
    rows = frame.to_dict("records") if frame is not None and len(frame) else []
    last = rows[-1] if rows else {}
    curve_rows = [r for r in rows if not r.get(FINISHED_FLAG) == 1]
    record: Dict[str, Any] = {
        "population": population, "index": index, "point": point, "trial_id": os.path.basename(result.path or ""),
        "trial_key": last.get("trial_key"), "started_at": last.get("started_at"),
        "ended_at": last.get("ended_at") or last.get("reported_at"), "reused": int(last.get("reused") or 0),
        "curve": [float(r[METRIC]) for r in curve_rows], "rounds": int(last.get(ROUND) or 0),
        "node_id": last.get("node_id"),
        "best_score": None, "best_iteration": None, "error": None, "stopped_by": None,
    }
    if result.error is not None:
        record.update(status=FAILED, error=one_line(_cause(result.error)))
    elif last.get(FINISHED_FLAG) == 1 or record["reused"]:
        finished = read_finished(trial_folder(setup["cache"], record["trial_key"])) if record["trial_key"] else None
        if finished is not None:  # the whole curve and score, as the trial wrote them
            # a reused trial was trained to its end by an earlier sweep: FINISHED with its recorded score, even when
            # the scheduler stopped the replay of its curve before the last report
            record["curve"] = [float(v) for v in finished["curve"]]
            record.update(status=FINISHED, best_score=float(finished["best_score"]),
                          best_iteration=int(finished["best_iteration"]))
        elif last.get(FINISHED_FLAG) == 1:
            record.update(status=FINISHED, best_score=float(last[METRIC]), best_iteration=int(last["best_iteration"]))
        else:
            record.update(status=PRUNED, stopped_by=asha_rule(sweep) if sweep.scheduler == "asha" else "stopped")
    else:
        record.update(status=PRUNED, stopped_by=asha_rule(sweep) if sweep.scheduler == "asha" else "stopped")
    if record["curve"] and record["best_score"] is None and record["status"] == PRUNED:
        record["best_score_so_far"] = min(record["curve"])
    return record


def _cause(error: BaseException) -> BaseException:
    """The trial's own exception inside Ray's wrappers (RayTaskError(...): ray::ImplicitFunc.train() ...)."""
    seen = 0
    while seen < 10:
        inner = getattr(error, "cause", None) or error.__cause__
        if not isinstance(inner, BaseException) or inner is error:
            break
        error, seen = inner, seen + 1
    return error


def _params(result: Any) -> Dict[str, Any]:
    """The trial's config: from its results, or (a trial that failed before reporting) its params.json."""
    if result.config:
        return dict(result.config)
    try:  # through Tune's own filesystem: the folder may be on S3
        with result.filesystem.open_input_stream(f"{result.path}/params.json") as stream:
            return json.loads(stream.read())
    except (OSError, ValueError):
        return {}
