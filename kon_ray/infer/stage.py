"""InferenceReporting: score the test and current splits with each population's model, write the predictions, and
publish a report per population.

    reports/predictions/{test,current}/part-<unit>.parquet   id, population, estrato, cluster, actual, predicted,
                                                             prob_<label>
    reports/<population>.json                                metrics per split, by estrato / cluster, importance,
                                                             prediction drift
    reports/<population>.html                                the same as a self-contained page (inline CSS + SVG)

One pass per split, through the execution layer (kon_ray.execution: work units planned from the Parquet footers,
one task of one CPU per unit): each task scores its rows, writes its predictions part and returns the metric counts
of exactly the rows it wrote, plus what prediction drift needs (kon_ray.infer.onepass). The test split goes first:
its pass returns the class probabilities, from which the driver fits the prediction-drift reference; the current
split's pass then also counts its probabilities on the reference's edges. Nothing re-reads the predictions.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from kon_ray import execution, storage
from kon_ray.config import POPULATIONS
from kon_ray.context import RunContext
from kon_ray.errors import DataError
from kon_ray.infer import html, onepass
from kon_ray.infer.report import build_report, feature_importance
from kon_ray.infer.score import ModelBundle, input_columns, load_bundle, merge_metric_partials, prob_columns
from kon_ray.segment.io import require_columns, split_columns, split_dir, split_files

log = logging.getLogger(__name__)

SPLITS = ("test", "current")  # test: held-out labelled data and the prediction-drift reference; current: deployment


def run(ctx: RunContext) -> Dict[str, Any]:
    dataset = ctx.config.dataset
    models_dir, features_dir = ctx.input_dir("train"), ctx.input_dir("preprocess")
    folders = [storage.join(models_dir, p) for p in POPULATIONS if storage.exists(storage.join(models_dir, p, "model.ubj"))]
    if not folders:
        raise DataError(f"{models_dir}: no population model (models/<population>/model.ubj) to score with")
    bundles = [load_bundle(folder) for folder in folders]  # on the driver: a bad model folder fails here, once
    labels = {b.population: tuple(b.labels) for b in bundles}

    metrics: Dict[str, Any] = {"rows": 0}
    merged: Dict[str, Dict[str, Any]] = {b.population: {} for b in bundles}
    splits = [s for s in SPLITS if storage.list_files(split_dir(features_dir, s))]  # an empty split has no parts
    plans = {}
    for split in splits:  # every split checked before anything is scored
        source = split_dir(features_dir, split)
        target = dataset.target_column if dataset.target_column in split_columns(source) else None
        columns = input_columns(bundles, dataset.id_column, target)
        require_columns(source, columns, f"the {'/'.join(b.population for b in bundles)} model(s) in {models_dir}")
        plans[split] = (source, columns, target)

    with_drift = {"test", "current"} <= set(splits)
    drift_cfg = onepass.numeric_config(ctx.config.drift)
    references: Dict[str, Any] = {}  # population -> ReferenceSummary, or the reason there is none
    drift: Dict[str, Dict[str, Any]] = {
        b.population: {"available": False, "reason": "needs both the test and the current split"} for b in bundles}
    for split, (source, columns, target) in plans.items():
        spec = onepass.PassSpec(
            folders=tuple(folders), labels=labels, id_column=dataset.id_column, target_column=target,
            out=_fresh_folder(ctx.out("predictions", split)),
            collect=with_drift and split == "test",
            drift={p: onepass.counting_plan(r) for p, r in references.items() if not isinstance(r, str)}
            if with_drift and split == "current" else {},
        )
        units = execution.plan(split_files(source), columns)
        totals = execution.map_reduce(onepass.score_unit, units, onepass.merge, columns=columns,
                                      kwargs={"spec": spec}, name=f"infer_{split}") or onepass.Totals()
        metrics["rows"] += totals.rows
        metrics[f"{split}/rows"] = totals.rows
        if target is not None:
            for population, counts in merge_metric_partials(totals.metrics).items():
                merged[population][split] = counts
        if spec.collect:
            references = {b.population: _fit_reference(b, totals, drift_cfg) for b in bundles}
        if spec.drift or (with_drift and split == "current"):
            drift = {b.population: _compare(b, references[b.population], totals, drift_cfg) for b in bundles}

    for bundle in bundles:
        report = build_report(dataset.name, bundle.population, bundle.metadata, merged[bundle.population],
                              feature_importance(bundle.booster), drift[bundle.population])
        storage.write_json(ctx.out(f"{bundle.population}.json"), report)
        storage.write_text(ctx.out(f"{bundle.population}.html"), html.render(report))
        for split, m in report["splits"].items():
            prefix = f"{bundle.population}/{split}"
            metrics.update({f"{prefix}/accuracy": m["accuracy"], f"{prefix}/macro_f1": m["macro_f1"],
                            f"{prefix}/log_loss": m["log_loss"], f"{prefix}/baseline_accuracy": m["baseline"]["accuracy"]})
            log.info("infer %s %s: accuracy %.4f (majority baseline %.4f), macro F1 %.4f, log loss %.4f",
                     bundle.population, split, m["accuracy"], m["baseline"]["accuracy"], m["macro_f1"], m["log_loss"])
        if report["prediction_drift"].get("available"):
            metrics[f"{bundle.population}/prediction_drift_psi_max"] = report["prediction_drift"].get("psi_max")
    return metrics


def _fresh_folder(path: str) -> str:
    """The split's predictions folder, emptied (parts are named by unit: none may survive from another plan)."""
    storage.remove(path)
    fs, fs_path = storage.filesystem(path)
    fs.create_dir(fs_path, recursive=True)
    return path


def _fit_reference(bundle: ModelBundle, totals: onepass.Totals, cfg):
    """The population's prediction-drift reference from the test split's probabilities, or why there is none."""
    import numpy as np

    parts = totals.probs.get(bundle.population, [])
    probs = np.concatenate(parts) if parts else np.empty((0, len(bundle.labels)), np.float32)
    if not len(probs):
        return f"no {bundle.population} records in the test split"
    try:
        return onepass.fit_reference(probs, prob_columns(bundle.labels), cfg)
    except Exception as exc:  # drift is part of the report, not a reason to lose the scores and metrics
        log.warning("infer %s: prediction drift reference failed: %s", bundle.population, exc)
        return f"{type(exc).__name__}: {exc}"


def _compare(bundle: ModelBundle, reference, totals: onepass.Totals, cfg) -> Dict[str, Any]:
    if isinstance(reference, str):
        return {"available": False, "reason": reference}
    current: Optional[dict] = totals.drift.get(bundle.population)
    if current is None or current["rows"] == 0:
        return {"available": False, "reason": f"no {bundle.population} records in the current split"}
    try:
        return onepass.drift_report(reference, current, cfg)
    except Exception as exc:  # drift is part of the report, not a reason to lose the scores and metrics
        log.warning("infer %s: prediction drift failed: %s", bundle.population, exc)
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}


__all__: List[str] = ["run", "SPLITS"]
