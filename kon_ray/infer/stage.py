"""InferenceReporting: score the test and current splits with each population's model, write the predictions, and
publish a report per population.

    reports/predictions/{test,current}/part-<unit>.parquet   id, population, estrato, cluster, actual, predicted,
                                                             prob_<label>
    reports/<population>.json                                metrics per split, by estrato / cluster, importance,
                                                             prediction drift
    reports/<population>.html                                the same as a self-contained page (inline CSS + SVG)
    reports/performance_report.json                          each population's performance estimated without the
                                                             current split's labels (kon_ray/infer/estimate.py)

One pass per split, through the execution layer (kon_ray.execution: work units planned from the Parquet footers,
one task of one CPU per unit): each task scores its rows, writes its predictions part and returns the metric counts
of exactly the rows it wrote, plus what prediction drift needs (kon_ray.drift.onepass). The test split goes first:
its pass returns the class probabilities, from which the driver fits the prediction-drift reference; the current
split's pass then also counts its probabilities on the reference's edges. Nothing re-reads the predictions.
The label-free performance estimate (`performance.*`) rides the same two passes: the test split's also returns each
row's label index, from which the driver calibrates each population's model; the current split's pass counts the
estimate's partials per month, estrato and cluster (kon_ray/infer/estimate.py).

HIGH prediction drift of any population raises the stage's `drift_flag` (and each report's), and with
`drift.fail_on_drift=true` the stage returns, with its metrics, the gate's verdict once every report is written:
the pipeline publishes the reports and then stops the run (exit code 4).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from kon_ray import execution, storage
from kon_ray.config import POPULATIONS
from kon_ray.context import STAGE_FOLDERS, RunContext
from kon_ray.drift import onepass
from kon_ray.drift.prediction import is_high
from kon_ray.errors import DataError
from kon_ray.infer import estimate, html
from kon_ray.infer.report import (
    PERFORMANCE_JSON,
    PREDICTIONS,
    REPORT_HTML,
    REPORT_JSON,
    build_report,
    feature_importance,
)
from kon_ray.model.score import input_columns, load_bundle, merge_metric_partials
from kon_ray.performance.report import headline
from kon_ray.segment.io import require_split_columns, split_columns, split_dir, split_files
from kon_ray.stages import GateVerdict, StageResult
from kon_ray.train.model_folder import MODEL_FILE

log = logging.getLogger(__name__)

SPLITS = ("test", "current")  # test: held-out labelled data and the prediction-drift reference; current: deployment
WINDOWS = ("the test split", "the current split")  # prediction drift's reference and current, as its reasons say


def run(ctx: RunContext) -> StageResult:
    dataset = ctx.config.dataset
    models_dir, features_dir = ctx.input_dir("train"), ctx.input_dir("preprocess")
    folders = [
        storage.join(models_dir, p) for p in POPULATIONS if storage.exists(storage.join(models_dir, p, MODEL_FILE))
    ]
    if not folders:
        raise DataError(f"{models_dir}: no population model (models/<population>/{MODEL_FILE}) to score with")
    bundles = [load_bundle(folder) for folder in folders]  # on the driver: a bad model folder fails here, once
    labels = {b.population: tuple(b.labels) for b in bundles}

    metrics: Dict[str, Any] = {"rows": 0}
    merged: Dict[str, Dict[str, Any]] = {b.population: {} for b in bundles}
    splits = [s for s in SPLITS if storage.list_files(split_dir(features_dir, s))]  # an empty split has no parts
    with_drift = {"test", "current"} <= set(splits)
    perf_cfg = ctx.config.performance
    plans = {}
    months: Optional[str] = None  # the performance estimate's chunks: months of the date column, when it is there
    for split in splits:  # every split checked before anything is scored
        source = split_dir(features_dir, split)
        present = split_columns(source)
        target = dataset.target_column if dataset.target_column in present else None
        columns = input_columns(bundles, dataset.id_column, target)
        models = "/".join(b.population for b in bundles)
        require_split_columns(source, columns, f"the {models} model(s) in {models_dir}")
        if split == "current" and perf_cfg.enabled and dataset.date_column in present:
            months = dataset.date_column
            columns = [*columns, months]
        plans[split] = (source, columns, target)

    # the estimate calibrates on the labelled test split and estimates on the current one
    estimating = perf_cfg.enabled and with_drift and plans["test"][2] is not None
    calibrations: Dict[str, Any] = {}  # population -> Calibration, or why there is none
    reference_rows: Dict[str, Any] = {}  # population -> its labelled test rows (probabilities, labels, segments)
    performance: Dict[str, Dict[str, Any]] = {}
    unavailable: Dict[str, str] = {} if estimating else {
        b.population: "disabled (performance.enabled=false)" if not perf_cfg.enabled
        else "needs the labelled test split and the current split" for b in bundles}
    drift_cfg = onepass.numeric_config(ctx.config.drift)
    references: Dict[str, Any] = {}  # population -> ReferenceSummary, or the reason there is none
    drift: Dict[str, Dict[str, Any]] = {
        b.population: {"available": False, "reason": "needs both the test and the current split"} for b in bundles}
    for split, (source, columns, target) in plans.items():
        spec = onepass.PassSpec(
            folders=tuple(folders), labels=labels, id_column=dataset.id_column, target_column=target,
            out=_fresh_folder(ctx.out(PREDICTIONS, split)),
            collect=with_drift and split == "test",
            drift={p: onepass.counting_plan(r) for p, r in references.items() if not isinstance(r, str)}
            if with_drift and split == "current" else {},
            performance={p: c for p, c in calibrations.items() if not isinstance(c, str)}
            if estimating and split == "current" else {},
            month_column=months if split == "current" else None,
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
            references = {b.population: onepass.reference_for(b, totals, drift_cfg, WINDOWS) for b in bundles}
        if estimating and split == "test":
            for b in bundles:
                reference = estimate.labelled(totals.probs.get(b.population, []),
                                              totals.labels.get(b.population, []),
                                              totals.estimate_segments.get(b.population))
                reference_rows[b.population] = reference
                calibrations[b.population] = estimate.calibrate(reference[0], reference[1], len(b.labels),
                                                                perf_cfg.bins)
        if estimating and split == "current":
            for b in bundles:
                calibration, window = calibrations[b.population], totals.performance.get(b.population)
                if isinstance(calibration, str) or window is None:
                    unavailable[b.population] = calibration if isinstance(calibration, str) else \
                        f"no {b.population} records in {WINDOWS[1]}"
                    continue
                performance[b.population] = estimate.population_report(
                    b.labels, calibration, reference_rows[b.population], window, perf_cfg, plans["current"][2],
                    months)
        if spec.drift or (with_drift and split == "current"):
            drift = {b.population: onepass.compare(b, references[b.population], totals, drift_cfg, WINDOWS)
                     for b in bundles}

    storage.write_json(ctx.out(PERFORMANCE_JSON), estimate.document(performance, unavailable))
    for population, block in performance.items():
        metrics.update(estimate.metrics(population, block))
        log.info("infer %s: %s", population, headline(block))
    for bundle in bundles:
        report = build_report(dataset.name, bundle.population, bundle.metadata, merged[bundle.population],
                              feature_importance(bundle.booster), drift[bundle.population],
                              performance.get(bundle.population)
                              or {"unavailable": unavailable.get(bundle.population, "not estimated")})
        storage.write_json(ctx.out(REPORT_JSON.format(population=bundle.population)), report)
        storage.write_text(ctx.out(REPORT_HTML.format(population=bundle.population)), html.render(report))
        for split, m in report["splits"].items():
            prefix = f"{bundle.population}/{split}"
            metrics.update({f"{prefix}/accuracy": m["accuracy"], f"{prefix}/macro_f1": m["macro_f1"],
                            f"{prefix}/log_loss": m["log_loss"],
                            f"{prefix}/baseline_accuracy": m["baseline"]["accuracy"]})
            log.info("infer %s %s: accuracy %.4f (majority baseline %.4f), macro F1 %.4f, log loss %.4f",
                     bundle.population, split, m["accuracy"], m["baseline"]["accuracy"], m["macro_f1"], m["log_loss"])
        if report["prediction_drift"].get("available"):
            metrics[f"{bundle.population}/prediction_drift_psi_max"] = report["prediction_drift"].get("psi_max")
    high = [b.population for b in bundles if is_high(drift[b.population])]
    metrics["drift_flag"] = int(bool(high))  # HIGH prediction drift raises the overall flag (the drift contract)
    if high:
        log.warning("infer: prediction drift is HIGH for %s (test split -> current split)", ", ".join(high))
    return StageResult(metrics, _gate(ctx, high, drift))


def _gate(ctx: RunContext, high: List[str], drift: Dict[str, Dict[str, Any]]) -> Optional[GateVerdict]:
    """With drift.fail_on_drift, the verdict that stops the run (exit code 4) when prediction drift is HIGH; the
    pipeline publishes the reports first and hands the verdict and the metrics to the tracker."""
    if not (ctx.config.drift.fail_on_drift and high):
        return None
    # the run folder's link, where users look
    where = storage.join(ctx.run_dir, STAGE_FOLDERS["infer"], REPORT_HTML.format(population=high[0]))
    worst = ", ".join(f"{p} (max PSI {drift[p]['psi_max']:.4f})" for p in high)
    return GateVerdict("infer", f"prediction drift is HIGH at InferenceReporting for {worst}, test split -> current"
                                f" split; see {where}")


def _fresh_folder(path: str) -> str:
    """The split's predictions folder, emptied (parts are named by unit: none may survive from another plan)."""
    storage.remove(path)
    fs, fs_path = storage.filesystem(path)
    fs.create_dir(fs_path, recursive=True)
    return path


__all__: List[str] = ["run", "SPLITS"]
