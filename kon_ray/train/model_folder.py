"""The model folder, `models/<population>/`: its one writer (the train stage) and its one reader (infer, the
tracker and DriftCheck through `read_model`, or these file names for the copies MLflow keeps). Self-contained:

    model.ubj            the booster (best round), feature names set
    metadata.json        features, classes, curve, params, counts, where it came from (kon_ray/train/stage.py)
    feature_state.json   copied from features/ (the preprocess transform)
    segment_state.json   copied from segment/ (estrato + cluster assignment)
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Tuple

from kon_ray import storage
from kon_ray.errors import DataError
from kon_ray.features.state import STATE_FILE as FEATURE_STATE_FILE
from kon_ray.segment.state import STATE_FILE as SEGMENT_STATE_FILE

MODEL_FILE = "model.ubj"
CHECKPOINT_MODEL = "model.ubj"  # the model in a training checkpoint (kon_ray/train/worker.py writes it)
METADATA_FILE = "metadata.json"
FILES = (MODEL_FILE, METADATA_FILE, FEATURE_STATE_FILE, SEGMENT_STATE_FILE)  # what `write_model_folder` writes
__all__ = ["MODEL_FILE", "METADATA_FILE", "FEATURE_STATE_FILE", "SEGMENT_STATE_FILE", "FILES", "write_model_folder",
           "read_model"]


def write_model_folder(folder: str, checkpoint_dir: str, features: List[str], metadata: Mapping[str, Any],
                       features_dir: str, segment_dir: str) -> None:
    """The model of a finished fit's checkpoint (its feature names set), its metadata, and copies of the feature
    and segment states it was trained on."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(os.path.join(checkpoint_dir, CHECKPOINT_MODEL))
    if booster.num_features() != len(features):
        raise RuntimeError(f"trained model has {booster.num_features()} features, expected {len(features)}")
    booster.feature_names = features
    _write_bytes(storage.join(folder, MODEL_FILE), bytes(booster.save_raw(raw_format="ubj")))
    storage.write_json(storage.join(folder, METADATA_FILE), dict(metadata))
    for source in (storage.join(features_dir, FEATURE_STATE_FILE), storage.join(segment_dir, SEGMENT_STATE_FILE)):
        if storage.exists(source):
            storage.write_text(storage.join(folder, os.path.basename(source)), storage.read_text(source))


def _write_bytes(path: str, data: bytes) -> None:
    fs, fs_path = storage.filesystem(path)
    if not storage.is_s3(path):
        os.makedirs(os.path.dirname(fs_path), exist_ok=True)
    with fs.open_output_stream(fs_path) as out:
        out.write(data)


def read_model(folder: str) -> Tuple[Any, Dict[str, Any]]:
    """(xgboost.Booster, metadata) of a models/<population>/ folder; a DataError if the two do not match."""
    import xgboost as xgb

    metadata = storage.read_json(storage.join(folder, METADATA_FILE))
    fs, fs_path = storage.filesystem(storage.join(folder, MODEL_FILE))
    with fs.open_input_stream(fs_path) as stream:
        raw = bytearray(stream.read())
    booster = xgb.Booster()
    try:
        booster.load_model(raw)
    except xgb.core.XGBoostError:
        raise DataError(f"{folder}/{MODEL_FILE}: not a readable XGBoost model") from None
    features = metadata.get("features") or []
    if booster.num_features() != len(features) or (booster.feature_names and list(booster.feature_names) != features):
        raise DataError(
            f"{folder}: {MODEL_FILE} expects {booster.num_features()} features but {METADATA_FILE} lists "
            f"{len(features)}; the model and its metadata do not belong together"
        )
    return booster, metadata
