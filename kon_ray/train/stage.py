"""Training stage (TrainDomestic, TrainIndustrial): one XGBoost model per population.

The train split is turned into numpy blocks {"X", "y", "valid"} (segments assigned, labels encoded, validation rows
flagged by id hash). A population with fewer than `model.distributed_min_rows` records, or any on a Ray of one node,
trains in one process (`kon_ray.train.single`: one Ray task, xgboost on the training CPUs, no Ray Train set-up,
whose fixed start costs more than the whole fit of a small population); a larger one on several nodes (or any, with
`model.distributed_min_rows=0`) trains with Ray Train: Ray Data streams the blocks into `cluster.train_workers`
XGBoost workers. Both paths run the same boosting loop and checkpoint under `cluster.storage_path` (default <run
folder>/ray_train/), removed once the model folder is written. Ctrl-C during a fit stops it on either path (its Ray
tasks cancelled, Ray Train's run aborted), removes its checkpoints and comes back as KeyboardInterrupt, so the run
exits 130. Everything the user can get wrong (missing columns, a population with too few records or one class) is
checked on the driver before any training starts. Each population's model folder, models/<population>/, is self-
contained; its files, writer and reader are in kon_ray/train/model_folder.py, the metadata.json it holds is
`_metadata` below.

A test can make a population's first fit lose its process (Ray Train worker or one-process task) after a given
round: it replaces `lost_process_round`, which the driver asks once per fit; production never does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import ray

from kon_ray import execution, progress, storage
from kon_ray.config import POPULATIONS, KonConfig
from kon_ray.context import RunContext
from kon_ray.errors import DataError
from kon_ray.execution import materialize, read_dataset, user_errors
from kon_ray.features.state import feature_columns, load_feature_state
from kon_ray.segment.io import require_split_columns, split_dir, split_files
from kon_ray.segment.state import SegmentState
from kon_ray.train import single
from kon_ray.train.boost import Progress, xgb_params
from kon_ray.train.data import (
    POPULATION_COLUMN,
    check_population,
    class_count_block,
    merge_class_counts,
    model_features,
    training_block,
)
from kon_ray.train.model_folder import FEATURE_STATE_FILE, MODEL_FILE, SEGMENT_STATE_FILE, write_model_folder
from kon_ray.train.worker import FAIL_AT_ROUND, POPULATION, PROGRESS_FILE, PROGRESS_SINK, train_loop

log = logging.getLogger(__name__)


def lost_process_round(population: str) -> Optional[int]:
    """The fault-injection hook: the round after which `population`'s first fit loses its process, or None. Always
    None here; the lost-worker tests (tests/train/test_train_stage.py) replace it with monkeypatch."""
    return None


def base_features(features_dir: str) -> List[str]:
    """The preprocess stage's feature columns, in order, from its feature state."""
    return list(feature_columns(load_feature_state(storage.join(features_dir, FEATURE_STATE_FILE))))


def _count_unit(table, unit, *, target_column: str, id_column: str, validation_fraction: float, seed: int):
    return class_count_block(table.to_pandas(), target_column=target_column, id_column=id_column,
                             validation_fraction=validation_fraction, seed=seed)


def class_counts(train_dir: str, id_column: str, target_column: str, fraction: float, seed: int) -> Dict[str, Any]:
    """{population: {label: {"train": n, "validation": m}}}, counted per work unit (`kon_ray.execution`), added on
    the driver."""
    import pandas as pd

    units = execution.plan(split_files(train_dir), [id_column, target_column, POPULATION_COLUMN])
    parts = list(execution.map_units(
        _count_unit, units, columns=[id_column, target_column, POPULATION_COLUMN], name="train_class_counts",
        kwargs=dict(target_column=target_column, id_column=id_column, validation_fraction=fraction, seed=seed),
    ))
    stacked = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if stacked.empty:
        raise DataError(f"{train_dir}: the train split has no records")
    return merge_class_counts(stacked)


def run(ctx: RunContext) -> Dict[str, Any]:
    return train_all(ctx)


@dataclass(frozen=True)
class TrainingInputs:
    """What training reads before it fits, the same for the stage and a sweep's trials: the model's features, the
    segment state, the train split and the columns read from it, the class counts and the classes per population."""

    features_dir: str
    segment_dir: str
    segment_state: SegmentState
    features: List[str]
    train_dir: str
    columns: List[str]
    counts: Dict[str, Dict[str, Dict[str, int]]]
    classes: Dict[str, List[str]]


def training_inputs(config: KonConfig, features_dir: str, segment_dir: str) -> TrainingInputs:
    """Read and check training's inputs from the preprocess and segment stages' folders (a DataError for a split
    without the columns training needs, or a population without classes enough)."""
    dataset, model_cfg = config.dataset, config.model
    segment_state = SegmentState.from_dict(storage.read_json(storage.join(segment_dir, SEGMENT_STATE_FILE)))
    features = model_features(base_features(features_dir))
    train_dir = split_dir(features_dir, "train")
    inputs = [dataset.id_column, dataset.target_column, POPULATION_COLUMN]
    columns = list(dict.fromkeys(inputs + features[:-2] + segment_state.input_columns()))
    require_split_columns(train_dir, columns, "training")
    counts = class_counts(train_dir, dataset.id_column, dataset.target_column, model_cfg.validation_fraction,
                          config.seed)
    classes = {pop: check_population(pop, counts.get(pop, {}), model_cfg.min_rows_per_class) for pop in POPULATIONS}
    return TrainingInputs(features_dir, segment_dir, segment_state, features, train_dir, columns, counts, classes)


def train_all(ctx: RunContext) -> Dict[str, Any]:
    """Train every population's model and write its model folder; the stage's metrics."""
    model_cfg, cluster = ctx.config.model, ctx.config.cluster
    read = training_inputs(ctx.config, ctx.input_dir("preprocess"), ctx.input_dir("segment"))
    features_dir, segment_dir, segment_state = read.features_dir, read.segment_dir, read.segment_state
    features, train_dir, columns = read.features, read.train_dir, read.columns
    counts, classes = read.counts, read.classes

    metrics: Dict[str, Any] = {"rows": 0, "train_workers": cluster.train_workers}
    rows = {pop: sum(c["train"] + c["validation"] for c in counts[pop].values()) for pop in POPULATIONS}
    nodes = execution.cpu_nodes()
    small = [pop for pop in POPULATIONS if not distributed(rows[pop], model_cfg.distributed_min_rows, nodes)]
    outcomes: Dict[str, Tuple[Dict[str, Any], float]] = {}
    with _progress(rows, model_cfg.num_boost_round) as (sink, reporter):
        if small:  # one process, every training CPU, the populations one after another (kon_ray/train/single.py)
            start = time.perf_counter()
            fitted = train_one_process(ctx, small, train_dir, columns, features, classes, segment_state, sink)
            for population, result in fitted.items():
                timing = result["metrics"]
                outcomes[population] = (result, timing["dmatrix_s"] + timing["boost_s"])
                reporter.update(_final_event(population, result["progress"], model_cfg.num_boost_round))
            log.info("train: %s in one process, %d threads, %.1f s (reading the train split once: %.1f s)",
                     " and ".join(small), fitted[small[0]]["params"]["nthread"], time.perf_counter() - start,
                     fitted[small[0]]["metrics"]["ingest_s"])
        for population in POPULATIONS:  # then the Ray Train fits, one at a time (each takes the training CPUs)
            if population not in outcomes:
                start = time.perf_counter()
                result = train_population(ctx, population, train_dir, columns, features, classes[population],
                                          segment_state, sink=sink)
                outcomes[population] = (result, time.perf_counter() - start)
                reporter.update(_final_event(population, result["progress"], model_cfg.num_boost_round))

    for population in POPULATIONS:
        folder = ctx.out(population)
        result, seconds = outcomes[population]
        pop_counts = counts[population]
        metadata = _metadata(ctx, population, features, classes[population], pop_counts, result, seconds)
        write_model_folder(folder, result["checkpoint_dir"], features, metadata, features_dir, segment_dir)
        result["cleanup"]()
        metrics["rows"] += rows[population]
        metrics.update({
            f"{population}/rows": rows[population],
            f"{population}/best_iteration": metadata["best_iteration"],
            f"{population}/rounds": metadata["rounds_trained"],
            f"{population}/validation_mlogloss": metadata["metrics"]["best_validation_mlogloss"],
            f"{population}/train_seconds": round(seconds, 2),
            f"{population}/distributed": int(result["trained_in"] == RAY_TRAIN),
        })
        log.info("train %s: %d rows (%s), best round %d of %d, validation mlogloss %.4f, %.1f s", population,
                 rows[population],
                 result["trained_in"].replace("_", " "), metadata["best_iteration"], metadata["rounds_trained"],
                 metadata["metrics"]["best_validation_mlogloss"], seconds)
    return metrics


ONE_PROCESS, RAY_TRAIN = "one_process", "ray_train"


def block_kwargs(ctx: RunContext, population: str, features: List[str], classes: List[str],
                  segment_state: SegmentState) -> Dict[str, Any]:
    """`training_block`'s arguments for one population."""
    from dataclasses import asdict

    dataset = ctx.config.dataset
    return dict(
        population=population, features=features, classes=classes, segment_state=asdict(segment_state),
        id_column=dataset.id_column, target_column=dataset.target_column,
        validation_fraction=ctx.config.model.validation_fraction, seed=ctx.config.seed,
    )


def _loop_config(ctx: RunContext, population: str, features: List[str], classes: List[str], threads: int,
                 sink: Any) -> Dict[str, Any]:
    """A fit's loop config (`kon_ray.train.worker.train_loop`'s, and each job's of `single.fit_all_task`)."""
    model_cfg = ctx.config.model
    config: Dict[str, Any] = {
        "params": xgb_params(model_cfg, len(classes), threads, ctx.config.seed),
        "features": len(features),
        "num_boost_round": model_cfg.num_boost_round,
        "early_stopping_rounds": model_cfg.early_stopping_rounds,
        "checkpoint_frequency": model_cfg.checkpoint_frequency,
        "max_bin": model_cfg.max_bin,
        "nthread": threads,
        POPULATION: population,
        PROGRESS_SINK: sink,
    }
    fail_at = lost_process_round(population)
    if fail_at is not None:  # tests only: the marker makes the loss happen once, whatever the restart resumes from
        marker = os.path.join(tempfile.gettempdir(), f"kon_ray-lost-{uuid.uuid4().hex}")
        config[FAIL_AT_ROUND] = {"round": fail_at, "marker": marker}
    return config


def train_one_process(ctx: RunContext, populations: List[str], train_dir: str, columns: List[str],
                      features: List[str], classes: Dict[str, List[str]], segment_state: SegmentState,
                      sink: Any = None) -> Dict[str, Dict[str, Any]]:
    """The populations below `model.distributed_min_rows`, in one Ray task on every training CPU (as many as the
    largest node has), one after another (`kon_ray.train.single`). {population: fitted, as `train_population`}."""
    dataset, model_cfg, cluster = ctx.config.dataset, ctx.config.model, ctx.config.cluster
    threads = single.one_process_cpus(cluster.train_workers * cluster.cpus_per_train_worker)
    storage_path = cluster.storage_path or storage.join(ctx.run_dir, "ray_train")
    jobs = [
        single.Job(
            population=population,
            block_kwargs=block_kwargs(ctx, population, features, classes[population], segment_state),
            config=_loop_config(ctx, population, features, classes[population], threads, None),
            checkpoint_dir=storage.join(storage_path, f"{dataset.name}-{population}-{uuid.uuid4().hex[:8]}"),
        )
        for population in populations
    ]
    units = execution.plan(split_files(train_dir), columns)
    fitted = single.fit_all(units, columns, jobs, cpus=threads, max_failures=model_cfg.max_failures, sink=sink)
    return {job.population: {**fitted[job.population], "params": job.config["params"], "trained_in": ONE_PROCESS}
            for job in jobs}


def _final_event(population: str, fitted: Progress, max_rounds: int) -> Dict[str, Any]:
    """A finished fit's progress as the event its last round sent."""
    return {"population": population, "round": fitted.rounds, "max_rounds": max_rounds,
            "best_score": fitted.best_score, "best_round": fitted.best_iteration + 1, "done": True}


@contextlib.contextmanager
def _progress(rows: Dict[str, int], max_rounds: int) -> Iterator[Any]:
    """The fits' rounds on the terminal (kon_ray/progress.py): a `RoundSink` the fits send to (a Ray actor when Ray
    runs: the fits are in Ray tasks and workers), polled by the driver. Yields the sink and the reporter (which the
    driver also tells each finished fit's final state, not to depend on the last event's arrival)."""
    reporter_output, tty = progress.terminal_output()
    reporter = progress.RoundProgress("train", {pop: float(n) for pop, n in rows.items()}, max_rounds,
                                      reporter_output, tty)
    if ray.is_initialized():
        actor = ray.remote(progress.RoundSink).options(num_cpus=0, name=None).remote()
        sink, take = actor, lambda: ray.get(actor.take.remote(), timeout=30)
    else:
        local = progress.RoundSink()
        sink, take = local, local.take
    try:
        with progress.Poller(take, reporter):
            yield sink, reporter
    finally:
        if ray.is_initialized() and sink is not None and not isinstance(sink, progress.RoundSink):
            ray.kill(sink)


def distributed(rows: int, min_rows: int, nodes: int) -> bool:
    """Whether a population of `rows` records trains with Ray Train: `model.distributed_min_rows` 0 always (tests
    force it so); else from that many records, on a Ray of more than one node with CPUs. On one node one process
    with every CPU's thread beat Ray Train's workers at every size measured (1.05x against 1.35x plain xgboost,
    BENCHMARKS.md "Training"): they only exchange histograms there, with no more cores to gain."""
    return min_rows == 0 or (rows >= min_rows and nodes > 1)


def train_population(
    ctx: RunContext,
    population: str,
    train_dir: str,
    columns: List[str],
    features: List[str],
    classes: List[str],
    segment_state: SegmentState,
    sink: Any = None,
) -> Dict[str, Any]:
    """Fit one population's model with XGBoostTrainer (`cluster.train_workers` workers); returns the final
    checkpoint's local folder, progress, params and which path trained it. `sink`: where the fit's rounds go
    (`kon_ray.progress.RoundSink` or its actor)."""
    dataset, model_cfg, cluster = ctx.config.dataset, ctx.config.model, ctx.config.cluster
    unit_kwargs = block_kwargs(ctx, population, features, classes, segment_state)
    train_cpus = cluster.train_workers * cluster.cpus_per_train_worker
    loop_config = _loop_config(ctx, population, features, classes, cluster.cpus_per_train_worker, sink)
    storage_path = cluster.storage_path or storage.join(ctx.run_dir, "ray_train")
    name = f"{dataset.name}-{population}-{uuid.uuid4().hex[:8]}"

    data = read_dataset(split_files(train_dir), columns, map_batches=training_block, fn_kwargs=unit_kwargs)
    if ray.cluster_resources().get("CPU", 0) - train_cpus < 1:
        # no CPU left for Ray Data once the workers hold theirs: streaming would wait forever, so read first
        log.warning("train %s: no CPU left for Ray Data beside %d training CPUs; materializing the data first",
                    population, train_cpus)
        data = materialize(data)
    fitted = fit(data, loop_config, workers=cluster.train_workers, cpus_per_worker=cluster.cpus_per_train_worker,
                 storage_path=storage_path, name=name, max_failures=model_cfg.max_failures)
    return {**fitted, "params": loop_config["params"], "trained_in": RAY_TRAIN}


def fit(data, loop_config: Dict[str, Any], *, workers: int, cpus_per_worker: int, storage_path: str, name: str,
        max_failures: int) -> Dict[str, Any]:
    """One XGBoostTrainer fit of `train_loop` over `data`; the final checkpoint copied to a local folder.

    Returns checkpoint_dir, progress, metrics (the worker's timings) and cleanup (removes the Ray Train folder and
    the local copy)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    if not storage.is_s3(storage_path):
        storage_path = os.path.abspath(storage_path)
    trainer = _trainer_class()(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(
            storage_path=storage_path,
            name=name,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={"train": data},
    )
    previous = signal.getsignal(signal.SIGINT)
    try:
        with user_errors():  # a KonError raised inside a worker comes back wrapped: give the user the original
            result = trainer.fit()
    except KeyboardInterrupt:
        _remove_quietly(storage.join(storage_path, name))  # its checkpoints: a new run starts a new fit
        raise
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)  # Ray Train leaves its handler installed after the fit
    if result.checkpoint is None:
        raise RuntimeError(f"{name}: Ray Train finished without a checkpoint")
    local = result.checkpoint.to_directory()
    progress = Progress.from_json(open(os.path.join(local, PROGRESS_FILE)).read())
    if not progress.final:
        raise RuntimeError(f"{name}: the last checkpoint is not the finished model")

    def cleanup() -> None:
        import shutil

        storage.remove(storage.join(storage_path, name))
        shutil.rmtree(local, ignore_errors=True)

    return {"checkpoint_dir": local, "progress": progress, "metrics": dict(result.metrics or {}), "cleanup": cleanup}


def _trainer_class():
    """XGBoostTrainer with kon_ray's Ctrl-C. Ray Train (v2) installs its own SIGINT handler for the fit: it aborts
    the run and then calls sys.exit(0) (the process exits 1 with no word to the user, and the MLflow run cannot
    tell an interruption from an exit), and it stays installed after the fit. Ours aborts the run the same way
    (controller.abort: the workers stop), then raises KeyboardInterrupt; a second Ctrl-C does not wait for the abort.
    `fit` puts the previous handler back afterwards."""
    from ray.train.xgboost import XGBoostTrainer

    class Trainer(XGBoostTrainer):
        def _register_sigint_handler(self, controller) -> None:  # Ray Train's hook, called in the main thread
            def on_sigint(signum, frame):
                signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop waiting
                try:
                    ray.get(controller.abort.remote())
                except ray.exceptions.RayError:
                    pass  # abort ends the controller actor, so this get fails: the run is stopped either way
                raise KeyboardInterrupt

            signal.signal(signal.SIGINT, on_sigint)

    assert hasattr(XGBoostTrainer, "_register_sigint_handler"), "Ray Train's SIGINT hook moved (see _trainer_class)"
    return Trainer


def _remove_quietly(path: str) -> None:
    try:
        storage.remove(path)
    except Exception as exc:  # noqa: BLE001 - leftover checkpoints are not worth hiding the interruption
        log.debug("could not remove %s: %s", path, exc)


def _metadata(ctx: RunContext, population: str, features: List[str], classes: List[str],
              counts: Dict[str, Dict[str, int]], result: Dict[str, Any], seconds: float) -> Dict[str, Any]:
    import xgboost

    progress: Progress = result["progress"]
    best = progress.best_iteration
    return {
        "dataset": ctx.config.dataset.name,
        "population": population,
        "model_file": MODEL_FILE,
        "features": features,
        "segment_features": features[-2:],
        "classes": {str(i): label for i, label in enumerate(classes)},
        "class_labels": classes,
        "class_counts": {label: counts[label]["train"] + counts[label]["validation"] for label in classes},
        "rows": {
            "train": sum(c["train"] for c in counts.values()),
            "validation": sum(c["validation"] for c in counts.values()),
        },
        "best_iteration": best,
        "rounds_trained": progress.rounds,
        "stopped_early": progress.stopped_early,
        "resumed_from_rounds": progress.resumed_from,
        "training_curve": {name: {"mlogloss": values} for name, values in progress.history.items()},
        "metrics": {
            "best_validation_mlogloss": progress.best_score,
            "train_mlogloss_at_best": progress.history["train"][best] if best >= 0 else None,
        },
        "params": result["params"],
        "target_column": ctx.config.dataset.target_column,
        "id_column": ctx.config.dataset.id_column,
        "population_column": POPULATION_COLUMN,
        "transform_artifacts": {"feature_state": FEATURE_STATE_FILE, "segment_state": SEGMENT_STATE_FILE},
        "trained_in": result["trained_in"],  # one_process (below model.distributed_min_rows) or ray_train
        "train_workers": ctx.config.cluster.train_workers if result["trained_in"] == RAY_TRAIN else 1,
        "train_seconds": round(seconds, 2),
        "worker_seconds": {k: round(float(v), 3) for k, v in result["metrics"].items() if k.endswith("_s")},
        # the training process's peak resident memory (one-process path; in a reused Ray worker, since it started)
        "peak_rss_bytes": result["metrics"].get("peak_rss_bytes"),
        "xgboost_version": xgboost.__version__,
    }
