"""The only place that knows the order of the stages: run each chosen stage, time it, publish its folder.

Every stage publishes to a folder named by its key (kon_ray/manifest.py) in the cache beside the run folder, in
one step, and writes its manifest last; the run folder links to it (a symlink locally, a pointer file on S3). A
stage whose folder and manifest already exist is reused, not recomputed: that is how an interrupted run resumes
and how the jobs of a sweep share ingest, preprocess and drift.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from typing import Any, Callable, Dict, Optional, Protocol

from kon_ray import execution, manifest, stages, storage
from kon_ray.context import STAGE_FOLDERS, RunContext
from kon_ray.errors import DriftGateError
from kon_ray.ingest import data_fingerprint
from kon_ray.run_index import RunIndex

log = logging.getLogger(__name__)

class StageObserver(Protocol):
    """Told about every stage as it ends (MLflow tracking implements this)."""

    def stage_finished(self, stage: str, seconds: float, metrics: Dict[str, Any], folder: str) -> None: ...


def stage_function(name: str) -> Callable[[RunContext], Dict[str, Any]]:
    return stages.stage(name).function()


def cache_root(ctx: RunContext) -> str:
    """Where stage outputs are kept by key: `cache_dir`, or `.cache` beside the run folder. Under the command that is
    one cache per dataset, `outputs/<dataset>/.cache`, for single runs and sweeps alike (a sweep job's run folder
    is elsewhere, so `kon_ray.run` sets `cache_dir` to the single runs' cache for it)."""
    if ctx.config.cache_dir:
        return ctx.config.cache_dir
    parent = ctx.run_dir.rstrip("/").rsplit("/", 1)[0] if storage.is_s3(ctx.run_dir) else os.path.dirname(
        os.path.abspath(ctx.run_dir)
    )
    return storage.join(parent, ".cache")


def plan(ctx: RunContext) -> RunContext:
    """Resolve where every stage's outputs live for this config and data (its keyed cache folder)."""
    extra = {entry.name: entry.extra_key_material(ctx.config) for entry in stages.STAGES
             if entry.name in ctx.config.stages}
    keys = manifest.stage_keys(ctx.config, data_fingerprint(ctx.config.dataset.path), extra)
    root = cache_root(ctx)
    paths = {stage: storage.join(root, f"{stage}-{key}") for stage, key in keys.items()}
    return replace(ctx, stage_paths=paths, stage_keys=keys)


def run_pipeline(
    ctx: RunContext, observer: Optional[StageObserver] = None, start_ray: Optional[Callable[[], None]] = None
) -> Dict[str, Dict[str, Any]]:
    """Run the configured stages in order; return each stage's metrics.

    `start_ray` is called once, just before the first stage that needs Ray actually runs: bad input found by
    ingest, and a re-run whose stages are all reused, never pay for starting Ray.
    """
    ctx = plan(ctx)
    chosen = [stage for stage in stages.STAGE_ORDER if stage in ctx.config.stages]
    results: Dict[str, Dict[str, Any]] = {}
    index = RunIndex(ctx.run_dir, ctx.config.dataset.name, ctx.plain)
    for stage in chosen:
        final = ctx.stage_dir(stage)
        previous = manifest.read_manifest(final) if ctx.config.reuse else None
        if previous is not None and previous.get("key") == ctx.stage_keys[stage]:
            metrics, seconds = dict(previous.get("metrics", {}), cached=1), 0.0
            log.info("stage %s: reused (key %s) from %s", stage, ctx.stage_keys[stage], final)
        else:
            if start_ray is not None and stages.stage(stage).needs_ray:
                start_ray()
                start_ray = None
            started = time.perf_counter()
            try:
                metrics, seconds = _run_stage(ctx, stage, final)
            except DriftGateError as gated:
                # the gate stopped the run after publishing its reports: the observer gets them before the run
                # ends (a tracked run is then FAILED with stopped_by=drift_gate, its evidence in MLflow)
                index.add(stage, STAGE_FOLDERS[stage], ctx.stage_keys[stage], final, reused=False)
                if observer is not None:
                    observer.stage_finished(stage, time.perf_counter() - started, _gated_metrics(final, gated), final)
                raise
        _link_into_run_folder(ctx, stage, final)
        index.add(stage, STAGE_FOLDERS[stage], ctx.stage_keys[stage], final, reused=bool(metrics.get("cached")))
        results[stage] = metrics
        if observer is not None:
            observer.stage_finished(stage, seconds, metrics, final)
    return results


def _run_stage(ctx: RunContext, stage: str, final: str) -> tuple[Dict[str, Any], float]:
    for leftover in storage.remove_abandoned_staging(final):
        log.info("stage %s: removed %s, left by an interrupted run", stage, leftover)
    staged = storage.staging_dir(final)
    log.info("stage %s: started", stage)
    spilled_before = execution.spilled_bytes()
    start = time.perf_counter()
    try:
        metrics = stage_function(stage)(replace(ctx, output_dir=staged, stage=stage)) or {}
    except DriftGateError:
        # the gate stops the run only after its report is published (without a manifest: it is not reused)
        storage.publish(staged, final)
        _link_into_run_folder(ctx, stage, final)
        raise
    except BaseException:
        storage.remove(staged)
        raise
    seconds = time.perf_counter() - start
    spilled = _spilled_since(spilled_before)
    if spilled:
        # the object store was too small for what was in flight: not an error, but the user should know
        metrics = {**metrics, "spilled_bytes": spilled}
        log.info("stage %s: Ray spilled %.1f MiB of objects to disk (object store full)", stage, spilled / 1024**2)
    storage.publish(staged, final)
    storage.write_json(
        storage.join(final, manifest.MANIFEST),
        {"stage": stage, "key": ctx.stage_keys[stage], "seconds": round(seconds, 3), "metrics": metrics},
    )
    rows = f", {metrics['rows']:,} rows" if isinstance(metrics.get("rows"), int) else ""
    log.info("stage %s: finished in %.1f s%s -> %s", stage, seconds, rows, final)
    return metrics, seconds


def _gated_metrics(folder: str, gated: Optional[DriftGateError] = None) -> Dict[str, Any]:
    """The metrics a stage stopped by the drift gate would have returned: those the error carries (InferenceReporting
    attaches its own), else the drift stage's from the report it published ({} when the report cannot be read: the
    observer still logs the folder)."""
    from kon_ray.drift.check import metrics
    from kon_ray.drift.report import REPORT_JSON

    carried = getattr(gated, "metrics", None)
    if isinstance(carried, dict):
        return dict(carried, stopped_by_gate=1)

    try:
        return dict(metrics(storage.read_json(storage.join(folder, REPORT_JSON))), stopped_by_gate=1)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("drift gate: could not read the metrics of %s: %s", folder, exc)
        return {"stopped_by_gate": 1}


def _spilled_since(before: Optional[int]) -> int:
    after = execution.spilled_bytes()
    return after - before if before is not None and after is not None else 0


def _link_into_run_folder(ctx: RunContext, stage: str, final: str) -> None:
    """Make the stage's outputs visible under the run folder's own name for it (features/, drift/, ...)."""
    link = storage.join(ctx.run_dir, STAGE_FOLDERS[stage])
    if storage.is_s3(ctx.run_dir):
        storage.write_json(f"{link}.json", {"stage": stage, "location": final})
        return
    os.makedirs(ctx.run_dir, exist_ok=True)
    if os.path.islink(link) or os.path.exists(link):
        if os.path.realpath(link) == os.path.realpath(final):
            return
        os.remove(link) if os.path.islink(link) else None
    os.symlink(os.path.relpath(final, ctx.run_dir), link)
