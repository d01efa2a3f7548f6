"""The model registry, as the stages that score with registered models see it (prediction drift): which version of
`<dataset>-<population>` each population would be scored with (`resolve`, registry look-ups only, when the pipeline
plans) and those exact versions loaded (`load_bundles`, just before the stage runs). Neither raises: a registry
that cannot answer becomes the reason the report gives."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from kon_ray.config import POPULATIONS
from kon_ray.model.registered import RegisteredModel, Resolution
from kon_ray.model.score import ModelBundle
from kon_ray.secrets import redact_text
from kon_ray.segment.state import SegmentState
from kon_ray.tracking.common import import_mlflow, one_line
from kon_ray.tracking.names import registered_name
from kon_ray.tracking.uri import resolve_uri
from kon_ray.train.model_folder import METADATA_FILE, SEGMENT_STATE_FILE


def resolve(dataset_name: str, tracking_cfg, pinned: Optional[str] = None) -> Resolution:
    """Which version of `<dataset>-<population>` each population would be scored with: the latest, a pinned version
    number, or the version an `@alias` points at. Registry look-ups only (nothing is downloaded); never raises."""

    def nobody(why: str) -> Resolution:
        return Resolution(missing=tuple((p, why) for p in POPULATIONS))

    if not tracking_cfg.enabled:
        return nobody("tracking is off (tracking.enabled=false), so there is no model registry to take a model from")

    uri = resolve_uri(tracking_cfg.uri)
    shown = redact_text(uri)  # these messages end up in the drift report: never a password from the URI
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        return nobody(f"no tracking database at {shown} yet, so nothing is registered")
    try:
        import_mlflow()
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
    except Exception as exc:  # a registry that cannot answer must not stop the run: the report says why
        return nobody(redact_text(f"the model registry at {shown} could not be reached ({one_line(exc)})"))
    models, missing = [], []
    for population in POPULATIONS:
        name = registered_name(dataset_name, population)
        try:
            found = _version(client, name, pinned)
        except Exception as exc:
            missing.append((population, redact_text(f"the model registry at {shown} could not be reached while"
                                                    f" looking up {name!r} ({one_line(exc)})")))
            continue
        if isinstance(found, str):
            missing.append((population, found))
        else:
            models.append(RegisteredModel(population, name, str(found.version), found.run_id))
    return Resolution(tuple(models), tuple(missing))


def _version(client, name: str, pinned: Optional[str]):
    """The model version to use, or why there is none (a string)."""
    from mlflow.exceptions import MlflowException

    if pinned is None:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            return (f"nothing registered as {name!r} (a successful run with tracking.register_models=true"
                    " registers its models)")
        return max(versions, key=lambda v: int(v.version))
    try:
        if pinned.startswith("@"):
            return client.get_model_version_by_alias(name, pinned[1:])
        return client.get_model_version(name, pinned)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            what = f"alias {pinned[1:]!r}" if pinned.startswith("@") else f"version {pinned}"
            return f"drift.prediction_model={pinned}: {name!r} has no {what}"
        raise


def load_bundles(resolution: Resolution, tracking_cfg) -> Tuple[List[ModelBundle], Dict[str, str]]:
    """([ModelBundle], {population: why not}) for exactly the versions `resolution` names. Never raises."""
    uri = resolve_uri(tracking_cfg.uri)
    bundles: List[ModelBundle] = []
    failed: Dict[str, str] = {}
    for model in resolution.models:
        try:
            metadata, state = _model_files(uri, model)
            if not metadata.get("features") or not metadata.get("class_labels"):
                raise ValueError(f"models/{model.population}/metadata.json of run {model.run_id} has no features"
                                 " or class_labels")
            mlflow = import_mlflow()
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(uri)
            try:
                booster = mlflow.xgboost.load_model(model.uri)
            finally:
                mlflow.set_tracking_uri(previous)
            metadata = dict(metadata, population=model.population)
            bundles.append(ModelBundle(model.population, booster, metadata, SegmentState.from_dict(state)))
        except Exception as exc:  # a model deleted under us, a run without its files: no comparison, not a crash
            failed[model.population] = redact_text(f"could not load {model.name} version {model.version}: "
                                                   f"{one_line(exc)}")
    return bundles, failed


def _model_files(uri: str, model: RegisteredModel) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The metadata.json and segment_state.json the train stage wrote beside the model, from its run's artifacts."""

    from mlflow.tracking import MlflowClient


    if not model.run_id:
        raise ValueError("the model version has no source run to take its metadata.json from")
    client = MlflowClient(uri)
    out = []
    with tempfile.TemporaryDirectory(prefix="kon_model_") as scratch:
        for name in (METADATA_FILE, SEGMENT_STATE_FILE):
            path = client.download_artifacts(model.run_id, f"models/{model.population}/{name}", scratch)
            with open(path, encoding="utf-8") as handle:
                out.append(json.load(handle))
    return out[0], out[1]
