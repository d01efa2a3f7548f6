"""The function every Ray Train worker runs (`XGBoostTrainer(train_loop_per_worker=train_loop)`).

A worker reads its shard of the population's training data (numpy batches built by Ray Data: a float32 matrix,
labels and the validation flag), builds QuantileDMatrix objects straight from those arrays through a DataIter (no
pandas, no concatenated copy), resumes from `ray.train.get_checkpoint()` when Ray Train restarted it, and runs the
boosting loop. `RayTrainReportCallback` writes a checkpoint every `checkpoint_frequency` rounds; metrics are not
reported on the other rounds (each report is a round trip to the controller, and the full curve is in the final
checkpoint anyway).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import xgboost as xgb

from kon_ray.progress import RoundNotifier
from kon_ray.train.boost import Progress, boost
from kon_ray.train.model_folder import CHECKPOINT_MODEL

# a checkpoint's model, as RayTrainReportCallback.CHECKPOINT_NAME names it (its get_model() reads our checkpoints
# too); the model folder's own file names are in kon_ray/train/model_folder.py
PROGRESS_FILE = "progress.json"
# the loop config's fault-injection key (kon_ray/train/stage.py `lost_process_round`, tests only): {"round", "marker"}:
# the process exits after that round, once (it leaves the marker file first: the restarted fit does not exit again)
FAIL_AT_ROUND = "fail_at_round"
# the loop config's optional keys: xgboost TrainingCallbacks for `boost` (e.g. a sweep's per-round report), and where
# each round's progress goes (a `kon_ray.progress.RoundSink` or its Ray actor) with the population it is for
CALLBACKS = "callbacks"
PROGRESS_SINK = "progress_sink"
POPULATION = "population"


def send_progress(sink: Any, event: Dict[str, Any]) -> None:
    """One progress event to `sink`: a Ray actor's `update` (not waited for) or a local object's. Never fails a fit."""
    if sink is None:
        return
    try:
        remote = getattr(sink.update, "remote", None)
        (remote or sink.update)(event)
    except Exception:  # noqa: BLE001 - progress is a courtesy: a gone driver or actor must not stop training
        pass


def lose_process_once(fault: Optional[Dict[str, Any]], round_: int) -> None:
    """The injected fault: exit the process (os._exit, as on a preempted node) after the given round, the first time."""
    if fault is None or round_ != fault["round"] or os.path.exists(fault["marker"]):
        return
    with open(fault["marker"], "w", encoding="utf-8"):
        pass
    os._exit(1)
BATCH_ROWS = 65_536


class ArrayBatches(xgb.DataIter):
    """Feeds a list of (X, y) numpy batches to a QuantileDMatrix without concatenating them."""

    def __init__(self, batches: List[Tuple[np.ndarray, np.ndarray]], features: int):
        self._batches = batches or [(np.empty((0, features), np.float32), np.empty(0, np.float32))]
        self._i = 0
        super().__init__(release_data=True)

    def next(self, input_data) -> bool:
        if self._i == len(self._batches):
            return False
        X, y = self._batches[self._i]
        input_data(data=X, label=y)
        self._i += 1
        return True

    def reset(self) -> None:
        self._i = 0


def split_batches(batches: Iterator[Dict[str, np.ndarray]]) -> Tuple[list, list]:
    """Shard batches -> (train batches, validation batches) by the precomputed validation flag."""
    train, valid = [], []
    for batch in batches:
        X, y, v = batch["X"], batch["y"], batch["valid"].astype(bool)
        if v.all():
            valid.append((X, y))
        elif not v.any():
            train.append((X, y))
        else:
            train.append((X[~v], y[~v]))
            valid.append((X[v], y[v]))
    return train, valid


def build_matrices(train: list, valid: list, features: int, max_bin: int, nthread: int):
    dtrain = xgb.QuantileDMatrix(ArrayBatches(train, features), max_bin=max_bin, nthread=nthread)
    dvalid = xgb.QuantileDMatrix(ArrayBatches(valid, features), ref=dtrain, max_bin=max_bin, nthread=nthread)
    return dtrain, dvalid


def load_checkpoint(directory: str) -> Tuple[xgb.Booster, Progress]:
    booster = xgb.Booster()
    booster.load_model(os.path.join(directory, CHECKPOINT_MODEL))
    return booster, Progress.from_json(Path(directory, PROGRESS_FILE).read_text())


def _report_callback(frequency: int):
    """RayTrainReportCallback, reporting only with its checkpoints, which also carry progress.json."""
    from ray.train.xgboost import RayTrainReportCallback

    class _Callback(RayTrainReportCallback):
        progress: Optional[Progress] = None

        def _get_checkpoint(self, model):
            import contextlib

            import ray.train

            @contextlib.contextmanager
            def checkpoint():
                if ray.train.get_context().get_world_rank() != 0:
                    yield None
                    return
                with tempfile.TemporaryDirectory() as tmp:
                    model.save_model(os.path.join(tmp, CHECKPOINT_MODEL))
                    Path(tmp, PROGRESS_FILE).write_text(self.progress.to_json())
                    yield ray.train.Checkpoint(tmp)

            return checkpoint()

        def _report_metrics(self, report_dict):  # the rounds between checkpoints report nothing
            pass

    return _Callback(frequency=frequency, checkpoint_at_end=False)


def train_loop(config: Dict[str, Any]) -> None:
    """Ray Train worker entry. `config`: params, features (count), num_boost_round, early_stopping_rounds,
    checkpoint_frequency, max_bin, nthread; optional CALLBACKS (xgboost TrainingCallbacks), PROGRESS_SINK and
    POPULATION (rank 0 reports its rounds), FAIL_AT_ROUND (tests: the first attempt's rank 0 dies after that round,
    before Ray Train has seen a later checkpoint)."""
    import time

    import ray.train

    t0 = time.perf_counter()
    shard = ray.train.get_dataset_shard("train")
    train, valid = split_batches(shard.iter_batches(batch_size=BATCH_ROWS, batch_format="numpy", prefetch_batches=2))
    t1 = time.perf_counter()
    dtrain, dvalid = build_matrices(train, valid, config["features"], config["max_bin"], config["nthread"])
    del train, valid
    t2 = time.perf_counter()

    booster, progress = None, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            booster, progress = load_checkpoint(directory)

    callback = _report_callback(config["checkpoint_frequency"])
    fail_at = config.get(FAIL_AT_ROUND)
    rank = ray.train.get_context().get_world_rank()
    sink = config.get(PROGRESS_SINK) if rank == 0 else None
    notify = RoundNotifier(lambda event: send_progress(sink, event), config.get(POPULATION, ""),
                           config["num_boost_round"])

    def on_round(bst: xgb.Booster, current: Progress) -> None:
        callback.progress = current
        round_ = current.rounds - 1
        # RayTrainReportCallback's own rule: a checkpoint after round r when (r + 1) % frequency == 0
        callback.after_iteration(bst, round_, {name: {"mlogloss": v} for name, v in current.history.items()})
        notify(current.rounds, current.best_score, current.best_iteration)
        if rank == 0:
            lose_process_once(fail_at, round_)

    final, progress = boost(
        config["params"], dtrain, dvalid, config["num_boost_round"], config["early_stopping_rounds"],
        booster=booster, progress=progress, on_round=on_round, callbacks=config.get(CALLBACKS, ()),
    )
    notify(progress.rounds, progress.best_score, progress.best_iteration, done=True)
    callback.progress = progress
    timings = {"ingest_s": t1 - t0, "dmatrix_s": t2 - t1, "boost_s": time.perf_counter() - t2}
    callback._save_and_report_checkpoint(
        {"best_iteration": progress.best_iteration, "best_validation_mlogloss": progress.best_score, **timings}, final
    )
