"""Reading the stages' published folders for tracking: what to log as artifacts, the dataset fingerprint, the drift
flag, the models and their training curves. Pure file reading, no MLflow, so each reader is tested on a hand-made
folder.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import pyarrow.fs as pafs

from kon_ray import storage
from kon_ray.tracking.names import number, safe_name

MAX_ARTIFACT_BYTES = 50 * 1024**2  # a stage file larger than this is data, not a report: not logged
_SKIP_SUFFIXES = (".parquet", ".ubj", ".tmp")  # data parts, and models (logged with mlflow.xgboost instead)
_CURVE_KEYS = ("training_curve", "curve", "evals_result", "learning_curve", "history")


def artifact_files(folder: str) -> List[Tuple[str, str]]:
    """(file, path relative to `folder`) of the reports, states and manifests a stage published."""
    fs, root = storage.filesystem(folder)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        return []
    found = []
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if entry.type != pafs.FileType.File or entry.path.endswith(_SKIP_SUFFIXES):
            continue
        if "/_tmp" in entry.path or (entry.size or 0) > MAX_ARTIFACT_BYTES:
            continue
        relative = os.path.relpath(entry.path, root)
        if any(part.startswith(".") for part in relative.split(os.sep)):
            continue
        found.append((("s3://" + entry.path) if storage.is_s3(folder) else entry.path, relative))
    return sorted(found, key=lambda item: item[1])


def local_file(path: str, scratch: str) -> str:
    """`path` itself when local; an s3:// object is copied under `scratch` first."""
    if not storage.is_s3(path):
        return path
    target = os.path.join(scratch, os.path.basename(path))
    with open(target, "wb") as out:
        fs, fs_path = storage.filesystem(path)
        with fs.open_input_stream(fs_path) as stream:
            out.write(stream.read())
    return target


def read_json_if_there(path: str) -> Optional[Any]:
    try:
        return storage.read_json(path) if storage.exists(path) else None
    except (ValueError, OSError):
        return None


def dataset_fingerprint(ingest_folder: str) -> Dict[str, Any]:
    """path, files, rows, schema hash and fingerprint from ingest/ingest.json ({} when absent)."""
    summary = read_json_if_there(storage.join(ingest_folder, "ingest.json")) or {}
    return {key: summary[key] for key in ("path", "rows", "schema_hash", "fingerprint") if key in summary} | (
        {"files": len(summary["files"])} if isinstance(summary.get("files"), list) else {}
    )


def drift_flag(drift_folder: str, metrics: Mapping[str, Any]) -> Optional[str]:
    """The drift report's overall flag (summary.overall), else the stage's own `drift_flag`/`overall` metric."""
    report = read_json_if_there(storage.join(drift_folder, "drift_report.json"))
    if isinstance(report, Mapping):
        summary = report.get("summary")
        for key in ("drift_flag", "overall"):
            if isinstance(summary, Mapping) and key in summary:
                return str(bool(summary[key])).lower()
        if "overall" in report:
            return str(report["overall"]).lower()
    for key in ("drift_flag", "overall", "drift/overall"):
        if key in metrics:
            return str(metrics[key]).lower()
    return None


def prediction_drift(drift_folder: str) -> Tuple[Dict[str, float], Dict[str, str]]:
    """(metrics, tags) of the drift report's prediction drift: `prediction_drift/psi_max` and
    `prediction_psi/<population>/<class>` when a model was scored, the tag `prediction_drift` (its severity, or
    `not_checked` with the reason in `prediction_drift.reason`); ({}, {}) without a readable report."""
    report = read_json_if_there(storage.join(drift_folder, "drift_report.json"))
    summary = report.get("summary") if isinstance(report, Mapping) else None
    block = summary.get("prediction_drift") if isinstance(summary, Mapping) else None
    if not isinstance(block, Mapping):
        return {}, {}
    if not block.get("available"):
        return {}, {"prediction_drift": "not_checked", "prediction_drift.reason": str(block.get("reason", ""))[:5000]}
    metrics: Dict[str, float] = {}
    psi_max = number(block.get("psi_max"))
    if psi_max is not None:
        metrics["prediction_drift/psi_max"] = psi_max
    for feature in block.get("features") or []:
        value = number(feature.get("psi")) if isinstance(feature, Mapping) else None
        if value is not None and feature.get("name"):
            metrics[safe_name(f"prediction_psi/{feature['name']}")] = value
    return metrics, {"prediction_drift": str(block.get("severity"))}


def population_models(models_folder: str) -> Iterator[Tuple[str, str, Dict[str, Any]]]:
    """(population, model.ubj path, metadata) for each models/<population>/ holding a model."""
    fs, root = storage.filesystem(models_folder)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return
    for entry in sorted(fs.get_file_info(pafs.FileSelector(root)), key=lambda e: e.path):
        if entry.type != pafs.FileType.Directory:
            continue
        folder = ("s3://" + entry.path) if storage.is_s3(models_folder) else entry.path
        model = storage.join(folder, "model.ubj")
        if storage.exists(model):
            metadata = read_json_if_there(storage.join(folder, "metadata.json"))
            yield os.path.basename(entry.path.rstrip("/")), model, metadata if isinstance(metadata, dict) else {}


def training_curves(metadata: Mapping[str, Any]) -> Dict[str, List[float]]:
    """Per-round metric series from a model's metadata, as {"validation_mlogloss": [v0, v1, ...]}.

    Accepts XGBoost's evals_result shape ({"validation": {"mlogloss": [...]}}), a flat dict of lists
    ({"validation-mlogloss": [...]}) and a list of per-round records ([{"round": 0, "validation-mlogloss": ...}]).
    """
    curve = next((metadata[key] for key in _CURVE_KEYS if key in metadata), None)
    series: Dict[str, List[float]] = {}
    if isinstance(curve, Mapping):
        for split, value in curve.items():
            if isinstance(value, Mapping):
                for metric, values in value.items():
                    if isinstance(values, list):
                        series[f"{split}_{metric}"] = values
            elif isinstance(value, list):
                series[str(split)] = value
    elif isinstance(curve, list):
        for record in curve:
            if not isinstance(record, Mapping):
                continue
            for key, value in record.items():
                if key not in ("round", "iteration", "step", "epoch"):
                    series.setdefault(str(key), []).append(value)
    cleaned = {}
    for name, values in series.items():
        numbers = [number(v) for v in values]
        if numbers and all(v is not None for v in numbers):
            cleaned[safe_name(name.replace("-", "_"))] = numbers  # type: ignore[assignment]
    return cleaned


def final_metrics(metadata: Mapping[str, Any]) -> Dict[str, float]:
    """The numeric entries of a model's metadata `metrics` (or `final_metrics`) mapping."""
    source = metadata.get("metrics") or metadata.get("final_metrics") or {}
    if not isinstance(source, Mapping):
        return {}
    return {safe_name(str(k)): v for k, v in ((k, number(v)) for k, v in source.items()) if v is not None}


def feature_names(metadata: Mapping[str, Any]) -> Optional[List[str]]:
    for key in ("features", "feature_names", "feature_columns"):
        value = metadata.get(key)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
    return None


def input_example(features_folder: str, population: str, columns: List[str], rows: int,
                  population_columns: Tuple[str, ...] = ("population",)):
    """A few rows of the test features for `population` (a pandas frame of `columns`), or None if unavailable.
    The first of `population_columns` present in the parts picks the population's rows."""
    import pyarrow.parquet as pq

    for split in ("test", "current", "train"):
        for part in _parts(storage.join(features_folder, split)) + _parts(
            storage.join(features_folder, split, population)
        ):
            fs, fs_path = storage.filesystem(part)
            with fs.open_input_file(fs_path) as handle:
                schema = pq.ParquetFile(handle).schema_arrow
            if not set(columns) <= set(schema.names):
                continue
            population_column = next((c for c in population_columns if c in schema.names), None)
            wanted = list(columns) + ([population_column] if population_column else [])
            with fs.open_input_file(fs_path) as handle:
                frame = pq.read_table(handle, columns=list(dict.fromkeys(wanted))).slice(0, 2000).to_pandas()
            if population_column:
                values = frame[population_column].astype(str).str.lower()
                if (values == population).any():
                    frame = frame[values == population]
            frame = frame[list(columns)].head(rows)
            if len(frame):
                return frame.reset_index(drop=True)
    return None


def model_input_example(model_folder: str, features_folder: str, population: str, rows: int):
    """The model's exact input for a few test rows: its features in order, with the estrato and cluster columns
    derived by the model folder's own segment state (as the infer stage scores), or None if that cannot be built."""
    import pandas as pd

    from kon_ray.infer.score import load_bundle
    from kon_ray.segment.state import assign_segments
    from kon_ray.train.data import POPULATION_COLUMN

    bundle = load_bundle(model_folder, nthread=1)
    needed = list(dict.fromkeys([POPULATION_COLUMN, *bundle.base_features, *bundle.segment_state.input_columns()]))
    frame = input_example(features_folder, population, needed, rows, (POPULATION_COLUMN,))
    if frame is None:
        return None
    derived = assign_segments({name: frame[name].to_numpy() for name in frame.columns}, bundle.segment_state)
    return pd.DataFrame({name: derived[name] for name in bundle.features})


def _parts(folder: str) -> List[str]:
    prefix = "s3://" if storage.is_s3(folder) else ""
    try:
        return [prefix + f for f in storage.list_files(folder)][:3]
    except OSError:
        return []


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="kon_tracking_")
