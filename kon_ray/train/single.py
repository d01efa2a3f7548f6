"""Training the populations below `model.distributed_min_rows` in one process, without Ray Train's set-up
(controller, placement group, worker group, collective, dataset streaming).

One Ray task (so that it also runs when the driver is a thin client) holds every training CPU. It reads the train
split's Parquet work units (`kon_ray.execution`) once, building each population's numpy blocks (`training_block`,
the distributed path's), then each population's QuantileDMatrix straight from those blocks through a DataIter
(`build_matrices`: no concatenated copy; a population's float32 blocks are dropped once its matrix is built), and
trains the populations one after another, each with xgboost nthread = all those CPUs (`fit_all_task`). One after
another rather than side by side on a share of the threads each: side by side, the smaller population finishes
first and its threads idle until the larger one is done (issue 28: 221 s of a 1M-row POLA run with a core idle);
handing them over to the other fit mid-way makes its model depend on when that happened (xgboost's hist sums come
out differently for different thread counts), so the same seed would no longer give the same model.
BENCHMARKS.md ("Training on every core") has both measured.

It checkpoints like a Ray Train worker (model + progress.json every `checkpoint_frequency` rounds, per population,
under the Ray Train storage path), and a finished population's model as a final checkpoint; a retried task resumes
each population from its last checkpoint and takes finished ones as they are, so a lost process costs at most
`checkpoint_frequency` rounds, as on the distributed path. The same seed and CPUs give the same models.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from kon_ray import execution, storage
from kon_ray.errors import KonError
from kon_ray.progress import RoundNotifier
from kon_ray.train.boost import Progress, boost
from kon_ray.train.data import training_block
from kon_ray.train.worker import (
    CALLBACKS,
    CHECKPOINT_MODEL,
    FAIL_AT_ROUND,
    PROGRESS_FILE,
    build_matrices,
    lose_process_once,
    send_progress,
    split_batches,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One population's fit in `fit_all_task`: its `training_block` arguments, its loop config (`train_loop`'s:
    params, features, num_boost_round, early_stopping_rounds, checkpoint_frequency, max_bin, nthread, optional
    CALLBACKS and FAIL_AT_ROUND) and where its checkpoints go."""

    population: str
    block_kwargs: Dict[str, Any]
    config: Dict[str, Any]
    checkpoint_dir: str


# A unit's rows are converted to numpy and the populations' blocks this many rows at a time: the conversion's copies
# (numpy columns, a population's rows, its float32 matrix, the train/validation split) stay a few tens of MB whatever
# the unit's size, beside the growing float32 blocks.
SLICE_ROWS = 32_768


def table_batch(table) -> Dict[str, np.ndarray]:
    """An Arrow table's columns as numpy arrays, as Ray Data's numpy batches have them (dictionary columns
    decoded)."""
    import pyarrow as pa

    batch = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):  # as Ray Data's numpy batches: the values, not the codes
            column = column.cast(column.type.value_type)
        batch[name] = column.to_numpy()
    return batch


def read_populations(units: Sequence[execution.WorkUnit], columns: Sequence[str],
                     jobs: Sequence[Job]) -> Dict[str, Tuple[list, list]]:
    """{population: ([(X, y) train blocks], [(X, y) validation blocks])}, every unit read once for all the
    populations. Each unit is converted SLICE_ROWS rows at a time and each slice's block split into its train and
    validation rows at once, so that only one float32 copy of the rows is ever held, beside one unit's Arrow
    columns; Arrow's allocator gives back what a unit used before the next is read (it keeps freed pages
    otherwise: 0.27 GiB on a 300k x 242 split, as much as the float32 matrix)."""
    import pyarrow as pa

    out: Dict[str, Tuple[list, list]] = {job.population: ([], []) for job in jobs}
    for unit in units:
        table = execution.read_unit(unit, columns)
        for start in range(0, table.num_rows, SLICE_ROWS):
            batch = table_batch(table.slice(start, SLICE_ROWS))
            for job in jobs:
                block = training_block(batch, **job.block_kwargs)
                if len(block["y"]):
                    train, valid = split_batches(iter([block]))
                    out[job.population][0].extend(train)
                    out[job.population][1].extend(valid)
                del block
            del batch
        del table
        pa.default_memory_pool().release_unused()
    return out


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


def fit_all_task(units: Sequence[execution.WorkUnit], columns: Sequence[str], jobs: Sequence[Job],
                 sink: Any = None) -> Dict[str, Dict[str, Any]]:
    """Every job's fit in this process: one read of the units, each population's QuantileDMatrix, then the fits one
    after another (each on the threads its config names: all of this task's). `sink`: where each round's progress
    goes (`kon_ray.progress.RoundSink`, or its Ray actor). Returns {population: {"model": final model (UBJSON
    bytes), "progress", "metrics": timings (ingest_s: the shared read) and peak_rss_bytes}}."""
    t0 = time.perf_counter()
    parts = read_populations(units, columns, jobs)
    ingest_s = time.perf_counter() - t0
    matrices, dmatrix_s = {}, {}
    for job in jobs:  # all matrices first: then no float32 block is left while boosting
        t1 = time.perf_counter()
        train, valid = parts.pop(job.population)
        matrices[job.population] = build_matrices(train, valid, job.config["features"], job.config["max_bin"],
                                                  job.config["nthread"])
        del train, valid
        dmatrix_s[job.population] = time.perf_counter() - t1

    out = {}
    for job in jobs:
        t2 = time.perf_counter()
        dtrain, dvalid = matrices.pop(job.population)
        final, progress = _fit_one(job, dtrain, dvalid, sink)
        del dtrain, dvalid
        metrics = {"ingest_s": ingest_s, "dmatrix_s": dmatrix_s[job.population], "boost_s": time.perf_counter() - t2,
                   "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        out[job.population] = {"model": bytes(final.save_raw(raw_format="ubj")), "progress": progress.to_json(),
                               "metrics": metrics}
    return out


def _fit_one(job: Job, dtrain, dvalid, sink: Any):
    """One population's boosting, resumed from its checkpoint; a finished fit's final checkpoint is taken as is."""
    config = job.config
    booster, progress = _read_checkpoint(job.checkpoint_dir)
    notify = RoundNotifier(lambda event: send_progress(sink, event), job.population, config["num_boost_round"])
    if booster is not None and progress is not None and progress.final:
        notify(progress.rounds, progress.best_score, progress.best_iteration, done=True)
        return booster, progress
    frequency, fail_at = config["checkpoint_frequency"], config.get(FAIL_AT_ROUND)

    def on_round(bst, current: Progress) -> None:
        round_ = current.rounds - 1
        if (round_ + 1) % frequency == 0 and round_ + 1 < config["num_boost_round"] and not current.stopped_early:
            _write_checkpoint(job.checkpoint_dir, bst, current)
        notify(current.rounds, current.best_score, current.best_iteration)
        lose_process_once(fail_at, round_)

    final, progress = boost(config["params"], dtrain, dvalid, config["num_boost_round"],
                            config["early_stopping_rounds"], booster=booster, progress=progress, on_round=on_round,
                            callbacks=config.get(CALLBACKS, ()))
    _write_checkpoint(job.checkpoint_dir, final, progress)  # final: a retried task does not train it again
    notify(progress.rounds, progress.best_score, progress.best_iteration, done=True)
    return final, progress


def fit_all(units: Sequence[execution.WorkUnit], columns: Sequence[str], jobs: Sequence[Job], *, cpus: int,
            max_failures: int, sink: Any = None) -> Dict[str, Dict[str, Any]]:
    """`fit_all_task` as one Ray task with `cpus` CPUs (here when Ray is not running), retried from the last
    checkpoints up to `max_failures` times when the process is lost. Returns {population: {checkpoint_dir (a local
    folder with the final model and progress), progress, metrics, cleanup}}, the shape of
    `kon_ray.train.stage.fit`'s result. Interrupted (Ctrl-C), the task is cancelled, its checkpoints removed, and
    KeyboardInterrupt raised."""
    import ray

    def remove_checkpoints() -> None:
        for job in jobs:
            if storage.exists(job.checkpoint_dir):
                storage.remove(job.checkpoint_dir)

    names = ", ".join(job.population for job in jobs)
    for attempt in range(max_failures + 1):
        try:
            out = execution.run_remote(fit_all_task, list(units), list(columns), list(jobs), sink, num_cpus=cpus)
            break
        except KeyboardInterrupt:
            remove_checkpoints()  # a new run starts a new fit: nothing will resume from these
            raise
        except KonError:
            raise
        except ray.exceptions.RayError as exc:
            # a lost process (crash, OOM kill, node gone) is retried from the last checkpoints; an exception raised
            # by the fit itself (RayTaskError) would fail the same way again
            if isinstance(exc, ray.exceptions.RayTaskError) or attempt == max_failures:
                raise
            log.warning("train %s: the training process was lost (%s); retrying from the last checkpoint (%d of %d)",
                        names, type(exc).__name__, attempt + 1, max_failures)
    fitted = {}
    for job in jobs:
        result = out[job.population]
        local = tempfile.mkdtemp(prefix="kon-train-")
        with open(os.path.join(local, CHECKPOINT_MODEL), "wb") as model_file:
            model_file.write(result["model"])
        with open(os.path.join(local, PROGRESS_FILE), "w") as progress_file:
            progress_file.write(result["progress"])

        def cleanup(local: str = local, checkpoint_dir: str = job.checkpoint_dir) -> None:
            if storage.exists(checkpoint_dir):
                storage.remove(checkpoint_dir)
            shutil.rmtree(local, ignore_errors=True)

        fitted[job.population] = {"checkpoint_dir": local, "progress": Progress.from_json(result["progress"]),
                                  "metrics": result["metrics"], "cleanup": cleanup}
    return fitted


def one_process_cpus(train_cpus: int, fallback: Optional[int] = None) -> int:
    """The CPUs a one-process fit takes: the distributed fit's budget, but no more than the largest node has."""
    import ray

    if not ray.is_initialized():
        return max(1, min(train_cpus, fallback or os.cpu_count() or 1))
    largest = max((node.get("Resources", {}).get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=1)
    return max(1, min(train_cpus, int(largest)))
