"""DriftCheck as a pipeline stage: the reference window (preprocess train + test) against the current window.

Reads `features/train`, `features/test` and `features/reference_rest` (together the whole reference window,
whatever balanced sampling chose for training) and `features/current` (current) from PreprocessSplit,
analyses every column except the dataset's id, date and target columns and `drift.exclude`, and writes
reference_summary.json, drift_report.json, drift_summary.txt and drift_report.html. With
`drift.fail_on_drift=true` and the flag raised it raises DriftGateError after writing them (exit code 4).
"""

from __future__ import annotations

from typing import Any, Dict

from kon_ray import storage
from kon_ray.context import STAGE_FOLDERS, RunContext
from kon_ray.drift.check import gate, metrics, run_check
from kon_ray.drift.prediction import find_models, model_prediction_drift, not_available
from kon_ray.features.spec import calendar_features


def run(ctx: RunContext) -> Dict[str, Any]:
    cfg = ctx.config.drift
    dataset = ctx.config.dataset
    features = ctx.input_dir("preprocess")
    # the whole reference window: balanced sampling selects what training reads, not what drift compares
    reference = [storage.join(features, name) for name in ("train", "test", "reference_rest")]
    current = storage.join(features, "current")
    exclude = [dataset.id_column, dataset.date_column, dataset.target_column]
    if not cfg.calendar_features:
        exclude += calendar_features(list(dataset.features.dates))

    def prediction() -> Dict[str, Any]:
        models, reason = find_models(dataset.name, ctx.config.tracking)
        if not models:
            return not_available(reason)
        try:
            return model_prediction_drift(models, reference, current, cfg)
        except Exception as exc:  # scoring is a bonus here; the feature report must still be written
            return not_available(f"model could not score the data ({type(exc).__name__}: {exc})")

    report = run_check(cfg, current, ctx.output_dir, reference=reference, exclude=exclude, prediction=prediction)
    gate(report, cfg, storage.join(ctx.run_dir, STAGE_FOLDERS["drift"]))  # the run folder's drift/, where users look
    return metrics(report)
