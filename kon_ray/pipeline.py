"""The only place that knows the order of the stages: run each chosen stage, time it, publish its folder."""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import replace
from typing import Any, Callable, Dict, Optional, Protocol

from kon_ray import storage
from kon_ray.config import STAGE_ORDER
from kon_ray.context import RunContext
from kon_ray.errors import DriftGateError

log = logging.getLogger("kon_ray")

# stage name -> module with `run(ctx) -> dict`
STAGE_MODULES = {
    "ingest": "kon_ray.ingest",
    "preprocess": "kon_ray.features.stage",
    "drift": "kon_ray.drift.stage",
    "segment": "kon_ray.segment.stage",
    "train": "kon_ray.train.stage",
    "infer": "kon_ray.infer.stage",
}


class StageObserver(Protocol):
    """Told about every stage as it ends (MLflow tracking implements this)."""

    def stage_finished(self, stage: str, seconds: float, metrics: Dict[str, Any], folder: str) -> None: ...


def stage_function(stage: str) -> Callable[[RunContext], Dict[str, Any]]:
    return importlib.import_module(STAGE_MODULES[stage]).run


def run_pipeline(ctx: RunContext, observer: Optional[StageObserver] = None) -> Dict[str, Dict[str, Any]]:
    """Run the configured stages in order; return each stage's metrics."""
    chosen = [stage for stage in STAGE_ORDER if stage in ctx.config.stages]
    results: Dict[str, Dict[str, Any]] = {}
    for stage in chosen:
        final = ctx.stage_dir(stage)
        staged = storage.staging_dir(final)
        log.info("stage %s: started", stage)
        start = time.perf_counter()
        try:
            metrics = stage_function(stage)(replace(ctx, output_dir=staged)) or {}
        except DriftGateError:
            storage.publish(staged, final)  # the gate stops the run only after its report is published
            raise
        except BaseException:
            storage.remove(staged)
            raise
        seconds = time.perf_counter() - start
        storage.publish(staged, final)
        results[stage] = metrics
        rows = f", {metrics['rows']:,} rows" if "rows" in metrics else ""
        log.info("stage %s: finished in %.1f s%s -> %s", stage, seconds, rows, final)
        if observer is not None:
            observer.stage_finished(stage, seconds, metrics, final)
    return results
