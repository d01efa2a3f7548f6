"""Training a population in one process, without Ray Train's set-up (controller, placement group, worker group,
collective, dataset streaming), for populations below `model.distributed_min_rows`.

One Ray task (so that it also runs when the driver is a thin client) with the training CPUs reads the population's
rows straight from the train split's Parquet work units (`kon_ray.execution`), builds the same numpy blocks as the
distributed path (`training_block`), and runs the same boosting loop (`boost`) with xgboost nthread = those CPUs.
It checkpoints like a Ray Train worker (model.ubj + progress.json every `checkpoint_frequency` rounds, under the
Ray Train storage path) and a retried task resumes from the last checkpoint, so a lost process costs at most
`checkpoint_frequency` rounds, as on the distributed path. The same seed gives the same model (one process: no
row partitioning, fixed thread count).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, Optional, Sequence

import numpy as np

from kon_ray import execution, storage
from kon_ray.errors import KonError
from kon_ray.train.boost import Progress, boost
from kon_ray.train.data import training_block
from kon_ray.train.worker import (
    CHECKPOINT_MODEL,
    FAIL_AT_ROUND,
    PROGRESS_FILE,
    build_matrices,
    lose_process_once,
    split_batches,
)

log = logging.getLogger(__name__)


def unit_batches(units: Sequence[execution.WorkUnit], columns: Sequence[str],
                 block_kwargs: Dict[str, Any]) -> Iterator[Dict[str, np.ndarray]]:
    """The population's {"X", "y", "valid"} block of each work unit, read in this process."""
    import pyarrow as pa

    for unit in units:
        table = execution.read_unit(unit, columns)
        batch = {}
        for name in table.column_names:
            column = table.column(name)
            if pa.types.is_dictionary(column.type):  # as Ray Data's numpy batches: the values, not the codes
                column = column.cast(column.type.value_type)
            batch[name] = column.to_numpy()
        block = training_block(batch, **block_kwargs)
        if len(block["y"]):
            yield block


def _write_checkpoint(directory: str, booster, progress: Progress) -> None:
    """model-<rounds>.ubj, then progress.json naming that round count: a crash between the two leaves the previous
    checkpoint readable. Older models are removed afterwards."""
    model = storage.join(directory, f"model-{progress.rounds:06d}.ubj")
    fs, path = storage.filesystem(model)
    if not storage.is_s3(directory):
        os.makedirs(directory, exist_ok=True)
    with fs.open_output_stream(path) as out:
        out.write(bytes(booster.save_raw(raw_format="ubj")))
    storage.write_text(storage.join(directory, PROGRESS_FILE), progress.to_json())
    for old in storage.list_files(directory, suffix=".ubj"):
        if not old.endswith(os.path.basename(path)):
            fs.delete_file(old)


def _read_checkpoint(directory: str):
    import xgboost as xgb

    if not storage.exists(storage.join(directory, PROGRESS_FILE)):
        return None, None
    progress = Progress.from_json(storage.read_text(storage.join(directory, PROGRESS_FILE)))
    fs, path = storage.filesystem(storage.join(directory, f"model-{progress.rounds:06d}.ubj"))
    with fs.open_input_stream(path) as stream:
        raw = bytearray(stream.read())
    booster = xgb.Booster()
    booster.load_model(raw)
    return booster, progress


def fit_task(units: Sequence[execution.WorkUnit], columns: Sequence[str], block_kwargs: Dict[str, Any],
             config: Dict[str, Any], checkpoint_dir: str) -> Dict[str, Any]:
    """The whole fit in this process: read, QuantileDMatrix, boost. `config` is `train_loop`'s (params, features,
    num_boost_round, early_stopping_rounds, checkpoint_frequency, max_bin, nthread, optional FAIL_AT_ROUND: the
    first attempt dies after that round, a test hook). Returns the final model (UBJSON bytes), progress and the
    timings."""
    t0 = time.perf_counter()
    train, valid = split_batches(unit_batches(units, columns, block_kwargs))
    t1 = time.perf_counter()
    dtrain, dvalid = build_matrices(train, valid, config["features"], config["max_bin"], config["nthread"])
    del train, valid
    t2 = time.perf_counter()

    booster, progress = _read_checkpoint(checkpoint_dir)
    frequency, fail_at = config["checkpoint_frequency"], config.get(FAIL_AT_ROUND)

    def on_round(bst, current: Progress) -> None:
        round_ = current.rounds - 1
        if (round_ + 1) % frequency == 0 and round_ + 1 < config["num_boost_round"] and not current.stopped_early:
            _write_checkpoint(checkpoint_dir, bst, current)
        lose_process_once(fail_at, round_)

    final, progress = boost(config["params"], dtrain, dvalid, config["num_boost_round"],
                            config["early_stopping_rounds"], booster=booster, progress=progress, on_round=on_round)
    timings = {"ingest_s": t1 - t0, "dmatrix_s": t2 - t1, "boost_s": time.perf_counter() - t2}
    return {"model": bytes(final.save_raw(raw_format="ubj")), "progress": progress.to_json(), "metrics": timings}


def fit(units: Sequence[execution.WorkUnit], columns: Sequence[str], block_kwargs: Dict[str, Any],
        loop_config: Dict[str, Any], *, cpus: int, storage_path: str, name: str,
        max_failures: int, group: Optional[execution.TaskGroup] = None) -> Dict[str, Any]:
    """`fit_task` as one Ray task with `cpus` CPUs (here when Ray is not running), retried from its last checkpoint
    up to `max_failures` times when the process is lost; same return shape as `kon_ray.train.stage.fit`.

    `group`: the task's `TaskGroup` when another thread than the main one waits for it. Interrupted (Ctrl-C, or the
    group cancelled), the task is cancelled, its checkpoints removed, and KeyboardInterrupt raised."""
    import ray

    checkpoint_dir = storage.join(storage_path, name)
    for attempt in range(max_failures + 1):
        try:
            out = execution.run_remote(fit_task, list(units), list(columns), block_kwargs, loop_config,
                                       checkpoint_dir, num_cpus=cpus, group=group)
            break
        except KeyboardInterrupt:
            if storage.exists(checkpoint_dir):
                storage.remove(checkpoint_dir)  # a new run starts a new fit: nothing will resume from these
            raise
        except KonError:
            raise
        except ray.exceptions.RayError as exc:
            # a lost process (crash, OOM kill, node gone) is retried from the last checkpoint; an exception raised
            # by the fit itself (RayTaskError) would fail the same way again
            if isinstance(exc, ray.exceptions.RayTaskError) or attempt == max_failures:
                raise
            log.warning("train %s: the training process was lost (%s); retrying from the last checkpoint (%d of %d)",
                        name, type(exc).__name__, attempt + 1, max_failures)
    local = tempfile.mkdtemp(prefix="kon-train-")
    with open(os.path.join(local, CHECKPOINT_MODEL), "wb") as model_file:
        model_file.write(out["model"])
    with open(os.path.join(local, PROGRESS_FILE), "w") as progress_file:
        progress_file.write(out["progress"])

    def cleanup() -> None:
        if storage.exists(checkpoint_dir):
            storage.remove(checkpoint_dir)
        shutil.rmtree(local, ignore_errors=True)

    return {"checkpoint_dir": local, "progress": Progress.from_json(out["progress"]), "metrics": out["metrics"],
            "cleanup": cleanup}


def one_process_cpus(train_cpus: int, fallback: Optional[int] = None) -> int:
    """The CPUs a one-process fit takes: the distributed fit's budget, but no more than the largest node has."""
    import ray

    if not ray.is_initialized():
        return max(1, min(train_cpus, fallback or os.cpu_count() or 1))
    largest = max((node.get("Resources", {}).get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=1)
    return max(1, min(train_cpus, int(largest)))
