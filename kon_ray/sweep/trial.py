"""One trial: one population's model trained with one configuration, reporting its validation mlogloss after every
boosting round (so that ASHA compares trials at equal rounds), in a Ray Tune trial that holds `cpus` CPUs and gives
xgboost as many threads.

The boosting loop is the training stage's (`kon_ray.train.boost.boost`, with its per-round callback), on the rows
and validation split the stage would use (`kon_ray.train.data.training_block`, read once by the sweep driver and
shared through Ray's object store). A finished trial writes its model and progress to its folder in the cache,
`<cache>/trial-<key>/` (the key: the population, the data and segment stages' keys, the model config, the seed):
running the same sweep again replays those trials instead of training them. A stopped trial writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from kon_ray import execution, storage
from kon_ray.segment.io import split_files
from kon_ray.sweep.space import model_for
from kon_ray.train.config import ModelConfig

TRIAL_JSON = "trial.json"
MODEL_FILE = "model.ubj"
METRIC = "validation_mlogloss"
ROUND = "round"
FINISHED_FLAG = "finished"  # the last report of a trial that trained to its end (early stopping or all rounds)


def trial_key(population: str, inputs_key: str, model: Mapping[str, Any], seed: int) -> str:
    """What a trial's result depends on: its population, its inputs (the preprocess and segment stages' keys: the
    data, features, split and segmentation), its model config and the seed."""
    material = {"population": population, "inputs": inputs_key, "model": dict(model), "seed": seed}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trial_folder(cache: str, key: str) -> str:
    return storage.join(cache, f"trial-{key}")


def read_finished(folder: str) -> Optional[Dict[str, Any]]:
    """A finished trial's record (its curve, best round and score), or None when it never finished."""
    path = storage.join(folder, TRIAL_JSON)
    if not storage.exists(path) or not storage.exists(storage.join(folder, MODEL_FILE)):
        return None
    return storage.read_json(path)


def _write_finished(folder: str, booster: Any, record: Dict[str, Any]) -> None:
    """model.ubj first, trial.json last: a trial folder without trial.json is not a finished trial."""
    if not storage.is_s3(folder):
        os.makedirs(folder, exist_ok=True)
    fs, path = storage.filesystem(storage.join(folder, MODEL_FILE))
    with fs.open_output_stream(path) as out:
        out.write(bytes(booster.save_raw(raw_format="ubj")))
    storage.write_text(storage.join(folder, TRIAL_JSON), json.dumps(record, indent=2))


def run_trial(config: Dict[str, Any], data: Dict[str, Any], setup: Dict[str, Any]) -> None:
    """Ray Tune's function trainable. `config`: the point (model.* values). `data`: {"train": [(X, y)...],
    "valid": [...], "features": n, "classes": n}. `setup`: population, the base model config (dict), seed, cpus,
    cache folder, inputs key, and for tests `faults`: {"raise": a point whose trial raises, "die_once": a point
    whose trial's process exits the first time, as a lost worker or node would}."""
    import ray
    from ray import tune

    # deferred: xgboost in the trial's worker, not where the sweep is planned
    from kon_ray.train.boost import Progress, boost, xgb_params
    from kon_ray.train.worker import build_matrices

    started = time.time()
    config = {k: v for k, v in config.get("point", config).items() if k != "index"}  # a grid point, or a suggestion
    model = model_for(ModelConfig(**setup["model"]), config)
    key = trial_key(setup["population"], setup["inputs_key"], _model_dict(model), setup["seed"])
    folder = trial_folder(setup["cache"], key)
    # the node it runs on: the sweep's record and MLflow show how the trials spread over the cluster
    base = {"trial_key": key, "started_at": started, "node_id": ray.get_runtime_context().get_node_id()}
    faults = setup.get("faults") or {}
    fail = faults.get("raise")
    if fail and all(config.get(k) == v for k, v in fail.items()):
        raise RuntimeError(f"planted failure for {fail}")  # tests: a trial that fails must not stop the others
    die = faults.get("die_once")
    if die and all(config.get(k) == v for k, v in die.items()):
        marker = storage.join(setup["cache"], f"died-once-{key}")
        if not storage.exists(marker):  # tests: the trial's process is lost once; Tune runs the trial again
            storage.write_text(marker, str(os.getpid()))
            os._exit(1)

    finished = read_finished(folder)
    if finished is not None:  # trained by an earlier sweep: replay its curve, so the scheduler sees it again
        for i, value in enumerate(finished["curve"]):
            tune.report({ROUND: i + 1, METRIC: value, **base, "reused": 1, "reported_at": time.time()})
        tune.report({ROUND: len(finished["curve"]), METRIC: finished["best_score"], **base, "reused": 1,
                     FINISHED_FLAG: 1, "best_iteration": finished["best_iteration"], "ended_at": time.time()})
        return

    nthread = int(setup["cpus"])
    dtrain, dvalid = build_matrices(data["train"], data["valid"], data["features"], model.max_bin, nthread)
    params = xgb_params(model, int(data["classes"]), nthread, int(setup["seed"]))

    def on_round(_bst: Any, progress: Progress) -> None:
        tune.report({ROUND: progress.rounds, METRIC: progress.history["validation"][-1],
                     "train_mlogloss": progress.history["train"][-1], **base, "reused": 0,
                     "reported_at": time.time()})

    booster, progress = boost(params, dtrain, dvalid, model.num_boost_round, model.early_stopping_rounds,
                              on_round=on_round)
    ended = time.time()
    record = {"population": setup["population"], "model": _model_dict(model), "point": dict(config),
              "seed": setup["seed"], "curve": progress.history["validation"], "best_iteration": progress.best_iteration,
              "best_score": progress.best_score, "stopped_early": progress.stopped_early, "nthread": nthread,
              "seconds": round(ended - started, 3), "progress": json.loads(progress.to_json())}
    _write_finished(folder, booster, record)
    tune.report({ROUND: progress.rounds, METRIC: progress.best_score, **base, "reused": 0, FINISHED_FLAG: 1,
                 "best_iteration": progress.best_iteration, "ended_at": ended})


def _model_dict(model: Any) -> Dict[str, Any]:
    from dataclasses import asdict

    return asdict(model)


def population_data(train_dir: str, columns: List[str], block_kwargs: Dict[str, Any]) -> Tuple[list, list]:
    """The population's (train, validation) blocks, read here (the driver) from the train split's work units, with
    the training stage's own functions."""
    # deferred: xgboost and Ray Train in the trial's worker, not where the sweep is planned
    from kon_ray.train.single import Job, read_populations

    units = execution.plan(split_files(train_dir), columns)
    job = Job(population="sweep", block_kwargs=block_kwargs, config={}, checkpoint_dir="")
    return read_populations(units, columns, [job])["sweep"]
