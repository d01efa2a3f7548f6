"""InferenceReporting: score the test and current splits with each population's model, write the predictions, and
publish a report per population.

    reports/predictions/{test,current}/*.parquet   id, population, estrato, cluster, actual, predicted, prob_<label>
    reports/<population>.json                      metrics per split, by estrato / cluster, importance, drift
    reports/<population>.html                      the same as a self-contained page (inline CSS + SVG)

Scoring is `map_batches(Scorer)` on an actor pool (models loaded once per actor). The metrics are computed from
the written predictions: each block returns confusion counts and a log-loss sum, the driver adds them, so the
report and the prediction files always agree. Prediction drift compares the test split's class probabilities
(reference) with the current window's, through the drift stage's `prediction_drift` when it is installed.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import ray


from kon_ray import storage
from kon_ray.config import POPULATIONS
from kon_ray.context import RunContext
from kon_ray.errors import DataError
from kon_ray.infer import html
from kon_ray.infer.report import build_report, feature_importance
from kon_ray.infer.score import (
    ModelBundle,
    Scorer,
    input_columns,
    load_bundle,
    merge_payloads,
    metrics_block,
    prob_columns,
)
from kon_ray.segment.io import read_split, require_columns, split_columns, split_dir
from kon_ray.train.data import POPULATION_COLUMN

log = logging.getLogger(__name__)

SPLITS = ("test", "current")  # test: held-out labelled data; current: the deployment window
BATCH_ROWS = 16_384


def run(ctx: RunContext) -> Dict[str, Any]:
    dataset, cluster = ctx.config.dataset, ctx.config.cluster
    models_dir, features_dir = ctx.input_dir("train"), ctx.input_dir("preprocess")
    folders = [storage.join(models_dir, p) for p in POPULATIONS if storage.exists(storage.join(models_dir, p, "model.ubj"))]
    if not folders:
        raise DataError(f"{models_dir}: no population model (models/<population>/model.ubj) to score with")
    bundles = [load_bundle(folder) for folder in folders]  # on the driver: a bad model folder fails here, once

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
    for split, (source, columns, target) in plans.items():
        has_target = target is not None
        out = ctx.out("predictions", split)
        _score(source, columns, folders, out, dataset.id_column, target,
               actors=cluster.train_workers, cpus=cluster.cpus_per_train_worker)
        rows = _count_rows(out)
        metrics["rows"] += rows
        metrics[f"{split}/rows"] = rows
        if has_target:
            for population, counts in _metric_counts(out, bundles).items():
                merged[population][split] = counts

    for bundle in bundles:
        drift = _prediction_drift(ctx, bundle, ctx.out("predictions"), splits)
        report = build_report(dataset.name, bundle.population, bundle.metadata, merged[bundle.population],
                              feature_importance(bundle.booster), drift)
        storage.write_json(ctx.out(f"{bundle.population}.json"), report)
        storage.write_text(ctx.out(f"{bundle.population}.html"), html.render(report))
        for split, m in report["splits"].items():
            prefix = f"{bundle.population}/{split}"
            metrics.update({f"{prefix}/accuracy": m["accuracy"], f"{prefix}/macro_f1": m["macro_f1"],
                            f"{prefix}/log_loss": m["log_loss"], f"{prefix}/baseline_accuracy": m["baseline"]["accuracy"]})
            log.info("infer %s %s: accuracy %.4f (majority baseline %.4f), macro F1 %.4f, log loss %.4f",
                     bundle.population, split, m["accuracy"], m["baseline"]["accuracy"], m["macro_f1"], m["log_loss"])
        if drift.get("available"):
            metrics[f"{bundle.population}/prediction_drift_psi_max"] = drift.get("psi_max")
    return metrics


def _score(source: str, columns: List[str], folders: List[str], out: str, id_column: str,
           target_column: Optional[str], actors: int, cpus: int) -> None:
    from kon_ray.train.stage import _kon_error

    try:
        (
            read_split(source, columns)
            .map_batches(
                Scorer,
                fn_constructor_kwargs=dict(model_folders=folders, id_column=id_column, target_column=target_column,
                                           nthread=cpus),
                batch_format="numpy",
                batch_size=BATCH_ROWS,
                concurrency=actors,
                num_cpus=cpus,
            )
            .write_parquet(_fs_path(out), filesystem=storage.filesystem(out)[0])
        )
    except Exception as exc:  # a DataError from inside an actor: give the user the original one line
        original = _kon_error(exc)
        if original is not None:
            raise original from None
        raise


def _fs_path(path: str) -> str:
    return storage.filesystem(path)[1]


def _count_rows(folder: str) -> int:
    import pyarrow.parquet as pq

    fs, _ = storage.filesystem(folder)
    return sum(pq.ParquetFile(fs.open_input_file(f)).metadata.num_rows for f in storage.list_files(folder))


def _metric_counts(predictions: str, bundles: List[ModelBundle]) -> Dict[str, Dict[str, Any]]:
    """Metric counts per prediction file, one small Ray task each (no Ray Data pipeline to start for a few
    columns), added up on the driver."""
    labels = {b.population: b.labels for b in bundles}
    cols = ["population", "actual", "estrato", "cluster"] + sorted({c for b in bundles for c in prob_columns(b.labels)})
    fs, _ = storage.filesystem(predictions)
    refs = [_file_metrics.remote(path, fs, cols, labels) for path in storage.list_files(predictions)]
    return merge_payloads(ray.get(refs))


@ray.remote(num_cpus=1)
def _file_metrics(path: str, fs, columns: List[str], labels: Dict[str, List[str]]) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns, filesystem=fs)
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in columns}
    return metrics_block(batch, labels)["payload"][0]


def _prediction_drift(ctx: RunContext, bundle: ModelBundle, predictions: str, splits: List[str]) -> Dict[str, Any]:
    if not {"test", "current"} <= set(splits):
        return {"available": False, "reason": "needs both the test and the current split"}
    try:
        from kon_ray.drift.prediction import prediction_drift
    except ImportError:
        return {"available": False, "reason": "the drift stage's prediction_drift is not installed"}
    columns = prob_columns(bundle.labels)

    def probs(split: str):
        return (read_split(storage.join(predictions, split), [POPULATION_COLUMN, *columns])
                .filter(lambda row: row[POPULATION_COLUMN] == bundle.population)
                .select_columns(columns))

    try:
        return prediction_drift(probs("test"), probs("current"), ctx.config.drift, columns=columns)
    except Exception as exc:  # drift is part of the report, not a reason to lose the scores and metrics
        log.warning("infer %s: prediction drift failed: %s", bundle.population, exc)
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}



