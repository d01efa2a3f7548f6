"""A sweep from its checked config to its summary: the shared stages once, then each population's trials on Ray
Tune, then the best trial's model per population, sweep_summary.json and sweep.html in the sweep folder.

Ray and MLflow stay at the edges: the stages run through the pipeline (reused from the cache when a run or sweep
computed them already), the trials through `kon_ray.sweep.tuner`, and the caller logs the records to MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from kon_ray import pipeline, storage
from kon_ray.config import KonConfig
from kon_ray.context import RunContext
from kon_ray.execution import user_errors
from kon_ray.sweep import page
from kon_ray.sweep.config import SweepConfig
from kon_ray.sweep.space import Dimension, model_for
from kon_ray.sweep.summary import PAGE_FILE, SUMMARY_FILE, summarize
from kon_ray.sweep.trial import MODEL_FILE, population_data, read_finished, trial_folder
from kon_ray.sweep.tuner import default_concurrency, tune_population
from kon_ray.train.boost import Progress, xgb_params
from kon_ray.train.model_folder import write_model_folder
from kon_ray.train.stage import ONE_PROCESS, TrainingInputs, _metadata, block_kwargs
from kon_ray.train.stage import training_inputs as read_training_inputs
from kon_ray.train.worker import CHECKPOINT_MODEL, PROGRESS_FILE

log = logging.getLogger(__name__)

SHARED_STAGES = ("ingest", "preprocess", "segment", "drift")


def shared_stages(config: KonConfig, plain: Dict[str, Any], sweep_dir: str,
                  start_ray: Callable[[], None]) -> RunContext:
    """Run (or reuse) the stages every trial shares, untracked (the sweep's parent run records the sweep); the
    context that knows where they published."""

    shared = replace(config, stages=list(SHARED_STAGES), tracking=replace(config.tracking, enabled=False))
    ctx = RunContext(config=shared, plain=plain, run_dir=storage.join(sweep_dir, "shared"))
    with user_errors():
        pipeline.run_pipeline(ctx, None, start_ray)
    start_ray()  # the trials need Ray even when every stage was reused
    return pipeline.plan(ctx)


def training_inputs(ctx: RunContext) -> TrainingInputs:
    """What the training stage reads before fitting, with its own function, from the shared stages' folders."""
    return read_training_inputs(ctx.config, ctx.stage_dir("preprocess"), ctx.stage_dir("segment"))


def run_trials(config: KonConfig, sweep: SweepConfig, ctx: RunContext, inputs: TrainingInputs,
               points: Optional[List[Dict[str, Any]]], dimensions: Sequence[Dimension], sweep_dir: str,
               faults: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Every population's trials, one population's Tuner after the other; the trial records."""
    import ray

    cache = pipeline.cache_root(ctx)
    max_concurrent = sweep.max_concurrent or default_concurrency(ray.cluster_resources().get("CPU", 1),
                                                                 sweep.cpus_per_trial)
    records: List[Dict[str, Any]] = []
    for population in sweep.populations:
        classes = inputs.classes[population]
        kwargs = block_kwargs(ctx, population, inputs.features, classes, inputs.segment_state)  # the stage's own
        train, valid = population_data(inputs.train_dir, inputs.columns, kwargs)
        data = {"train": train, "valid": valid, "features": len(inputs.features), "classes": len(classes)}
        setup = {"population": population, "model": asdict(config.model), "seed": config.seed,
                 "cpus": sweep.cpus_per_trial, "cache": cache, "inputs_key": ctx.stage_keys["segment"],
                 "faults": faults or {}}
        count = len(points) if points is not None else sweep.trials
        log.info("sweep %s: %d trial(s), up to %d at once, %d CPU(s) each%s", population, count, max_concurrent,
                 sweep.cpus_per_trial, ", ASHA early stopping" if sweep.scheduler == "asha" else "")
        started = time.perf_counter()
        found = tune_population(population, data, setup, sweep, points, dimensions,
                                max_rounds=max(_max_rounds(config, p) for p in (points or [{}])),
                                max_concurrent=max_concurrent, storage_path=storage.join(sweep_dir, "tune"),
                                seed=sweep.seed if sweep.seed is not None else config.seed)
        done = {status: sum(r["status"] == status for r in found) for status in ("FINISHED", "PRUNED", "FAILED")}
        log.info("sweep %s: %d finished, %d pruned, %d failed in %.1f s", population, done["FINISHED"],
                 done["PRUNED"], done["FAILED"], time.perf_counter() - started)
        records += found
    return records


def _max_rounds(config: KonConfig, point: Dict[str, Any]) -> int:
    return int(point.get("num_boost_round", config.model.num_boost_round))


def write_best_models(config: KonConfig, summary: Dict[str, Any], inputs: TrainingInputs, ctx: RunContext,
                      sweep_dir: str) -> None:
    """The best trial's model per population as a model folder (kon_ray/train/model_folder.py) under
    <sweep dir>/best/models/<population>/, the files a run's models/<population>/ holds."""
    import tempfile


    cache = pipeline.cache_root(ctx)
    for population, best in summary["best"].items():
        if best is None:
            continue
        folder = trial_folder(cache, best["trial_key"])
        record = read_finished(folder)
        if record is None:
            continue
        model = model_for(config.model, best["point"])
        trial_ctx = replace(ctx, config=replace(ctx.config, model=model))
        with tempfile.TemporaryDirectory() as local:
            fs, path = storage.filesystem(storage.join(folder, MODEL_FILE))
            with fs.open_input_stream(path) as stream, open(os.path.join(local, CHECKPOINT_MODEL), "wb") as out:
                out.write(stream.read())
            with open(os.path.join(local, PROGRESS_FILE), "w", encoding="utf-8") as out:
                out.write(json.dumps(record["progress"]))
            classes = inputs.classes[population]
            result = {"progress": Progress(**record["progress"]), "trained_in": ONE_PROCESS, "metrics": {},
                      "params": xgb_params(model, len(classes), int(record["nthread"]), config.seed)}
            metadata = _metadata(trial_ctx, population, inputs.features, classes, inputs.counts[population],
                                 result, float(record["seconds"]))
            metadata["sweep_trial"] = {"index": best["index"], "point": best["point"], "trial_key": best["trial_key"]}
            write_model_folder(storage.join(sweep_dir, "best", "models", population), local, inputs.features,
                               metadata, inputs.features_dir, inputs.segment_dir)


def finish(records: List[Dict[str, Any]], sweep: SweepConfig, fixed: Sequence[str], settings: Dict[str, Any],
           sweep_dir: str, title: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """sweep_summary.json and sweep.html in the sweep folder (local or s3://); the summary, and each file's text by
    name (for the parent run's artifacts)."""
    summary = summarize(records, sweep.populations, fixed, settings)
    files = {SUMMARY_FILE: json.dumps(summary, indent=2, default=str), PAGE_FILE: page.render(summary, title)}
    for name, text in files.items():
        storage.write_text(storage.join(sweep_dir, name), text)
    return summary, files
