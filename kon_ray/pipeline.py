"""The only place that knows the order of the stages: run each chosen stage, time it, publish its folder.

Every stage publishes to a folder named by its key (kon_ray/manifest.py) in the cache beside the run folder, in
one step, and writes its manifest last; the run folder links to it (a symlink locally, a pointer file on S3). A
stage whose folder and manifest already exist is reused, not recomputed: that is how an interrupted run resumes
and how the jobs of a sweep share ingest, preprocess and drift.

Publishing is once per key, whoever finishes first (`_publish`): two runs of the same config and data may both
compute a stage, but the second to finish finds the first's complete folder, discards its own staging copy and uses
that one. A folder is reused only if a listing of it matches its manifest's file list (kon_ray/manifest.py). A fault
of the store (S3 past its retry budget, a full disk) ends the run with one line naming the object and exit 5
(`storage.storage_error`), the stage's staging folder removed and nothing of it published.

The drift gate is decided by the stage (its `StageResult` carries a `GateVerdict`, kon_ray/stages.py) and acted on
here, in one place: the stage is published, linked into the run folder and told to the observer like any other, with
`stopped_by_gate` = 1 among its metrics and the verdict (a tracked run then ends FAILED with stopped_by=drift_gate,
its evidence in MLflow); then the run stops with the verdict's DriftGateError (exit code 4). A stage its gate
stopped is published without a manifest, so it is never reused: a re-run computes it again and its gate decides
again (as before the verdict was a return value: a manifest keeps metrics, not a verdict to replay).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import replace
from typing import Any, Callable, Dict, Iterator, Optional, Protocol, Tuple, Union

from kon_ray import execution, manifest, stages, storage
from kon_ray.config import KonConfig
from kon_ray.context import STAGE_FOLDERS, RunContext
from kon_ray.errors import KonError, StorageError
from kon_ray.model.registered import Resolution
from kon_ray.run_index import RunIndex
from kon_ray.stages import GateVerdict, StageResult
from kon_ray.tracking import registry

log = logging.getLogger(__name__)

# On S3 (no rename) the run that publishes a stage first claims it with a conditional PUT of `<folder>._publishing`;
# another run that finishes the same stage meanwhile waits for that folder's manifest, polling every
# PUBLISH_POLL_S. A claim older than PUBLISH_STALE_S was left by a run that died while publishing: it is taken over.
PUBLISH_POLL_S = 0.5
PUBLISH_STALE_S = 1800.0
CLAIM_SUFFIX = "._publishing"


class StageObserver(Protocol):
    """Told about every stage as it ends (MLflow tracking implements this); `gate` is the verdict of a stage whose
    gate stops the run, which ends right after this call."""

    def stage_finished(self, stage: str, seconds: float, metrics: Dict[str, Any], folder: str,
                       gate: Optional[GateVerdict] = None) -> None: ...


def stage_function(name: str) -> Callable[[RunContext], Union[Dict[str, Any], StageResult]]:
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
    """Resolve where every stage's outputs live for this config and data (its keyed cache folder), and which
    registered models a stage that scores with them will use (their versions are part of its key)."""
    models = None
    if any(stages.stage(name).registered_models for name in ctx.config.stages):
        models = resolve_models(ctx.config)
    extra = {entry.name: models.key_material() for entry in stages.STAGES
             if entry.name in ctx.config.stages and entry.registered_models and models is not None}
    keys = manifest.stage_keys(ctx.config, storage.data_fingerprint(ctx.config.dataset.path), extra)
    root = cache_root(ctx)
    paths = {stage: storage.join(root, f"{stage}-{key}") for stage, key in keys.items()}
    return replace(ctx, stage_paths=paths, stage_keys=keys, models=models)


def resolve_models(config: KonConfig) -> Resolution:
    """The registered model versions prediction drift scores with (None in the key when there is none: tracking
    off, nothing registered, or a registry that cannot be reached; the report then says which). Registry look-ups
    only, on the driver before Ray; never raises: planning must not fail because of prediction drift."""
    try:
        return registry.resolve(config.dataset.name, config.tracking, config.drift.prediction_model)
    except Exception as exc:
        return Resolution(missing=(("all", f"the model registry lookup failed ({type(exc).__name__}: {exc})"),))


def with_models(ctx: RunContext, stage: str) -> RunContext:
    """The context for `stage`: for a stage that scores with registered models, exactly the planned versions, loaded
    (only now, when it runs and is not reused)."""
    if not stages.stage(stage).registered_models or ctx.models is None:
        return replace(ctx, models=None)
    bundles, failed = registry.load_bundles(ctx.models, ctx.config.tracking) if ctx.models.models else ([], {})
    return replace(ctx, models=replace(ctx.models, bundles=tuple(bundles), failed=tuple(failed.items())))


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
        gate: Optional[GateVerdict] = None
        with store_faults(final):
            previous = manifest.read_manifest(final)
            reusable = _reusable(stage, final, ctx.stage_keys[stage], previous) if ctx.config.reuse else None
            if reusable is not None:
                metrics, seconds = dict(reusable.get("metrics", {}), cached=1), 0.0
                log.info("stage %s: reused (key %s) from %s", stage, ctx.stage_keys[stage], final)
            else:
                if start_ray is not None and stages.stage(stage).needs_ray:
                    start_ray()
                    start_ray = None
                metrics, seconds, gate = _run_stage(ctx, stage, final, previous)
            _link_into_run_folder(ctx, stage, final)
            index.add(stage, STAGE_FOLDERS[stage], ctx.stage_keys[stage], final, reused=bool(metrics.get("cached")))
        results[stage] = metrics
        if observer is not None:
            observer.stage_finished(stage, seconds, metrics, final, gate)
        if gate is not None:
            raise gate.error()  # the one place the drift gate stops a run (exit code 4), its stage published
    return results


@contextlib.contextmanager
def store_faults(where: str) -> Iterator[None]:
    """A fault of the store met inside (S3 past its retry budget, a full disk; also inside a Ray task) becomes its
    one-line StorageError (exit 5) naming the object, or `where`; everything else passes through unchanged."""
    try:
        yield
    except KonError:
        raise
    except Exception as exc:
        fault = storage.storage_error(exc, where)
        if fault is None:
            raise
        raise fault from exc


def _reusable(stage: str, final: str, key: str, written: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """`written` (the folder's manifest) if the folder is a complete publication of `key`: checked against a
    listing of the folder, no data read. A folder whose files do not match is recomputed and never read."""
    if written is None or written.get("key") != key:
        return None
    why = manifest.problem(final, written)
    if why is not None:
        log.warning("stage %s: %s is not a complete publication (%s): computing it again, not reading it",
                    stage, final, why)
        return None
    return written


def _run_stage(ctx: RunContext, stage: str, final: str,
               replaces: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, Any], float, Optional[GateVerdict]]:
    """Run `stage` into its staging folder and publish it as `final`: (its metrics, seconds, its gate's verdict)."""
    for leftover in storage.remove_abandoned_staging(final):
        log.info("stage %s: removed %s, left by an interrupted run", stage, leftover)
    staged = storage.staging_dir(final)
    log.info("stage %s: started", stage)
    spilled_before = execution.spilled_bytes()
    start = time.perf_counter()
    try:
        result = StageResult.of(stage_function(stage)(replace(with_models(ctx, stage), output_dir=staged,
                                                              stage=stage)))
    except BaseException:
        storage.remove_quietly(staged)
        raise
    seconds = time.perf_counter() - start
    metrics = result.metrics
    if result.gate is not None:
        # published without a manifest: never reused (the module docstring says why); the caller stops the run
        storage.publish(staged, final)
        log.info("stage %s: stopped by its gate after %.1f s -> %s", stage, seconds, final)
        return dict(metrics, stopped_by_gate=1), seconds, result.gate
    spilled = _spilled_since(spilled_before)
    if spilled:
        # the object store was too small for what was in flight: not an error, but the user should know
        metrics = {**metrics, "spilled_bytes": spilled}
        log.info("stage %s: Ray spilled %.1f MiB of objects to disk (object store full)", stage, spilled / 1024**2)
    body = {"stage": stage, "key": ctx.stage_keys[stage], "seconds": round(seconds, 3), "metrics": metrics,
            "publish_id": uuid.uuid4().hex}
    try:
        written = _publish(stage, staged, final, body, replaces)
    except BaseException:
        storage.remove_quietly(staged)
        raise
    if written["publish_id"] != body["publish_id"]:
        return dict(written.get("metrics", {})), seconds, None
    rows = f", {metrics['rows']:,} rows" if isinstance(metrics.get("rows"), int) else ""
    log.info("stage %s: finished in %.1f s%s -> %s", stage, seconds, rows, final)
    return metrics, seconds, None


def _publish(stage: str, staged: str, final: str, body: Dict[str, Any],
             replaces: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Publish the staging folder as `final` with the manifest `body` (its file list added), once: if another run
    published the same key meanwhile (a complete folder whose publish_id is not that of `replaces`, the folder this
    run found there before computing), discard the staging copy and return that run's manifest instead.

    Locally the manifest goes into the staging folder and one rename publishes both: a reader never sees the folder
    without its manifest, and a rename onto an existing folder fails, so two publishers never mix files. On S3
    (no rename) a conditional PUT of `<final>._publishing` lets one run copy at a time, and the manifest, written
    after every object is copied, is what makes the folder published; a loser waits for it."""
    body["files"] = storage.file_sizes(staged)
    replaced_id = (replaces or {}).get("publish_id")

    def winner() -> Optional[Dict[str, Any]]:
        other = manifest.published(final, body["key"])
        return other if other is not None and other.get("publish_id") != replaced_id else None

    if storage.is_s3(final):
        return _publish_s3(stage, staged, final, body, winner)
    storage.write_json(storage.join(staged, manifest.MANIFEST), body)
    for _ in range(5):  # each turn either publishes, finds a winner, or clears a stale folder out of the way
        if storage.rename_into_place(staged, final):
            return body
        other = winner()
        if other is not None:
            return _discard(stage, staged, final, other)
        try:
            aside = storage.set_aside(final)  # an incomplete folder, or the one `reuse=false` replaces
        except FileNotFoundError:
            continue  # another run set it aside first
        if winner_aside := _fresh(aside, body["key"], replaced_id):
            # a run published between our check and the set-aside: put its folder back, it is the winner
            if storage.rename_into_place(aside, final):
                return _discard(stage, staged, final, winner_aside)
        storage.remove_quietly(aside)
    raise StorageError(f"could not publish {final}: other runs kept replacing it; run the same command again")


def _fresh(folder: str, key: str, replaced_id: Optional[str]) -> Optional[Dict[str, Any]]:
    other = manifest.published(folder, key)
    return other if other is not None and other.get("publish_id") != replaced_id else None


def _discard(stage: str, staged: str, final: str, other: Dict[str, Any]) -> Dict[str, Any]:
    storage.remove_quietly(staged)
    log.info("stage %s: another run published %s first; using its folder, this run's copy discarded", stage, final)
    return other


def _publish_s3(stage: str, staged: str, final: str, body: Dict[str, Any],
                winner: Callable[[], Optional[Dict[str, Any]]]) -> Dict[str, Any]:
    claim = final.rstrip("/") + CLAIM_SUFFIX
    note = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "publish_id": body["publish_id"]})
    polls = int(PUBLISH_STALE_S / PUBLISH_POLL_S) + 10
    for _ in range(polls):  # bounded: a claim older than PUBLISH_STALE_S is taken over before this runs out
        other = winner()
        if other is not None:
            return _discard(stage, staged, final, other)
        if storage.put_if_absent(claim, note):
            break
        age = storage.age_seconds(claim)
        if age is not None and age > PUBLISH_STALE_S:
            log.warning("stage %s: %s was left by a run that died while publishing; taking it over", stage, claim)
            storage.remove_quietly(claim)
            continue
        time.sleep(PUBLISH_POLL_S)  # another run is copying the same stage: its manifest comes next
    else:
        raise StorageError(f"{claim}: another run has been publishing {final} for over {PUBLISH_STALE_S:.0f} s; "
                           "delete that object if no run is, and run the same command again")
    try:
        other = winner()  # published between our last look and the claim
        if other is not None:
            return _discard(stage, staged, final, other)
        if storage.exists(final):  # incomplete, or what `reuse=false` replaces: its manifest goes first
            storage.remove(storage.join(final, manifest.MANIFEST))
            storage.remove(final)
        try:
            storage.copy_folder(staged, final)
            storage.write_json(storage.join(final, manifest.MANIFEST), body)  # last: now it is published
        except BaseException:
            storage.remove_quietly(final)  # no manifest: never read; removed so that nobody lists half a folder
            raise
        storage.remove_quietly(staged)
        return body
    finally:
        storage.remove_quietly(claim)


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
