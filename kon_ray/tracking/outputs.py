"""Reading the stages' published folders for tracking: what to log as artifacts, the dataset fingerprint, the drift
flag, the models, their training curves and input examples. Pure file reading, no MLflow. Each reader reads the
one format its stage writes (the file names are the producers' constants), and is tested on folders the real
stages wrote (tests/tracking/conftest.py).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import pyarrow.fs as pafs

from kon_ray import storage
from kon_ray.context import INGEST_SUMMARY
from kon_ray.drift.report import REPORT_JSON
from kon_ray.model.score import load_bundle
from kon_ray.run_index import readable, walk
from kon_ray.segment.state import assign_segments
from kon_ray.tracking.names import number, safe_name
from kon_ray.train.data import POPULATION_COLUMN
from kon_ray.train.model_folder import METADATA_FILE, MODEL_FILE


def artifact_files(folder: str) -> List[Tuple[str, str]]:
    """(file, path relative to `folder`) of the reports, states and manifests a stage published (the files a run
    folder on S3 also gets copies of: kon_ray/run_index.py)."""
    return [(location, relative) for location, relative, _ in readable(walk(folder))]


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
    """path, files (their count), rows, schema hash and fingerprint from the ingest stage's ingest.json ({} when
    absent); the fingerprint is kon_ray.storage.data_fingerprint, the one in the stages' cache keys."""
    summary = read_json_if_there(storage.join(ingest_folder, INGEST_SUMMARY))
    if not isinstance(summary, Mapping):
        return {}
    return {key: summary[key] for key in ("path", "rows", "schema_hash", "fingerprint")} | {
        "files": len(summary["files"])}


def drift_flag(drift_folder: str) -> Optional[str]:
    """The drift report's `summary.drift_flag` as "true"/"false"; None without a readable report."""
    report = read_json_if_there(storage.join(drift_folder, REPORT_JSON))
    if not isinstance(report, Mapping):
        return None
    return str(bool(report["summary"]["drift_flag"])).lower()


def prediction_drift(drift_folder: str) -> Tuple[Dict[str, float], Dict[str, str]]:
    """(metrics, tags) of the drift report's prediction drift: `prediction_drift/psi_max` and
    `prediction_psi/<population>/<class>` when a model was scored, the tag `prediction_drift` (its severity, or
    `not_checked` with the reason in `prediction_drift.reason`); ({}, {}) without a readable report."""
    report = read_json_if_there(storage.join(drift_folder, REPORT_JSON))
    if not isinstance(report, Mapping):
        return {}, {}
    block = report["summary"]["prediction_drift"]  # kon_ray/drift/prediction.py: report_block, combine
    if not block["available"]:
        return {}, {"prediction_drift": "not_checked", "prediction_drift.reason": str(block["reason"])[:5000]}
    metrics: Dict[str, float] = {}
    psi_max = number(block["psi_max"])
    if psi_max is not None:
        metrics["prediction_drift/psi_max"] = psi_max
    for feature in block["features"]:
        value = number(feature["psi"])
        if value is not None:
            metrics[safe_name(f"prediction_psi/{feature['name']}")] = value
    return metrics, {"prediction_drift": str(block["severity"])}


def population_models(models_folder: str) -> Iterator[Tuple[str, str, Dict[str, Any]]]:
    """(population, model file path, metadata) for each models/<population>/ holding a model."""
    fs, root = storage.filesystem(models_folder)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return
    for entry in sorted(fs.get_file_info(pafs.FileSelector(root)), key=lambda e: e.path):
        if entry.type != pafs.FileType.Directory:
            continue
        folder = ("s3://" + entry.path) if storage.is_s3(models_folder) else entry.path
        model = storage.join(folder, MODEL_FILE)
        if storage.exists(model):
            metadata = storage.read_json(storage.join(folder, METADATA_FILE))
            yield os.path.basename(entry.path.rstrip("/")), model, metadata


def training_curves(metadata: Mapping[str, Any]) -> Dict[str, List[float]]:
    """Per-round metric series from a model's metadata `training_curve` ({"validation": {"mlogloss": [...]}}, as
    kon_ray/train/stage.py writes it), as {"validation_mlogloss": [v0, v1, ...]}; a series with a value that is not
    a finite number is left out."""
    series: Dict[str, List[float]] = {}
    for split, by_metric in metadata["training_curve"].items():
        for metric, values in by_metric.items():
            numbers = [number(v) for v in values]
            if numbers and all(v is not None for v in numbers):
                series[safe_name(f"{split}_{metric}")] = [v for v in numbers if v is not None]
    return series


def final_metrics(metadata: Mapping[str, Any]) -> Dict[str, float]:
    """The numeric entries of a model's metadata `metrics` (`train_mlogloss_at_best` is None without a best
    round)."""
    values = ((safe_name(str(k)), number(v)) for k, v in metadata["metrics"].items())
    return {k: v for k, v in values if v is not None}


def model_input_example(model_folder: str, features_folder: str, population: str, rows: int):
    """The model's exact input for a few rows of `population` (a pandas frame of the model's features in order, the
    estrato and cluster columns derived by the model folder's own segment state, as the infer stage scores), taken
    from the first of the test, current and train splits that holds any; None if none does."""
    import pandas as pd
    import pyarrow.parquet as pq


    bundle = load_bundle(model_folder, nthread=1)
    needed = list(dict.fromkeys([POPULATION_COLUMN, *bundle.base_features, *bundle.segment_state.input_columns()]))
    for split in ("test", "current", "train"):
        for part in _parts(storage.join(features_folder, split)):
            fs, fs_path = storage.filesystem(part)
            with fs.open_input_file(fs_path) as handle:
                frame = pq.read_table(handle, columns=needed).slice(0, 2000).to_pandas()
            frame = frame[frame[POPULATION_COLUMN] == population].head(rows).reset_index(drop=True)
            if len(frame):
                derived = assign_segments({name: frame[name].to_numpy() for name in frame.columns},
                                          bundle.segment_state)
                return pd.DataFrame({name: derived[name] for name in bundle.features})
    return None


def _parts(folder: str) -> List[str]:
    prefix = "s3://" if storage.is_s3(folder) else ""
    try:
        return [prefix + f for f in storage.list_files(folder)][:3]
    except OSError:
        return []


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="kon_tracking_")
