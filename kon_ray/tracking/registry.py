"""The latest model of a dataset's population, for the drift stage's prediction drift.

`latest_model(dataset_name, population, tracking_cfg)` returns `(booster, metadata)` or None; the reason for a None
is logged (and `find_latest_model` returns it). Where it looks, in order:
1. the model registry: the highest version of `<dataset>-<population>` (registered by successful runs when
   `tracking.register_models=true`);
2. otherwise the most recent FINISHED run of the dataset in `tracking.experiment` that logged a model for the
   population (tag `model_id.<population>`).
`metadata` is that run's `models/<population>/metadata.json` artifact (features, classes, params, curve).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from kon_ray.secrets import redact_text
from kon_ray.tracking.config import TrackingConfig
from kon_ray.tracking.uri import resolve_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelLookup:
    model: Optional[Tuple[Any, Dict[str, Any]]]  # (xgboost.Booster, metadata) or None
    reason: str  # where it came from, or why there is none
    model_uri: Optional[str] = None
    run_id: Optional[str] = None


def latest_model(dataset_name: str, population: str, tracking_cfg: TrackingConfig) -> Optional[Tuple[Any, Dict]]:
    """(booster, metadata) of the latest model for `population` of `dataset_name`, or None (reason logged)."""
    found = find_latest_model(dataset_name, population, tracking_cfg)
    log.info("latest %s/%s model: %s", dataset_name, population, found.reason)
    return found.model


def find_latest_model(dataset_name: str, population: str, tracking_cfg: TrackingConfig) -> ModelLookup:
    if not tracking_cfg.enabled:
        return ModelLookup(None, "tracking is off (tracking.enabled=false): no model to compare with")
    from kon_ray.tracking.common import import_mlflow, one_line
    from kon_ray.tracking.names import registered_name

    uri = resolve_uri(tracking_cfg.uri)
    shown = redact_text(uri)  # these messages end up in the drift report: never a password from the URI
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///") :]):
        return ModelLookup(None, f"no tracking database at {shown} yet: no earlier run")
    mlflow = import_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    name = registered_name(dataset_name, population)
    try:
        model_uri, run_id, source = _registered(client, name) or _from_runs(
            client, tracking_cfg.experiment, dataset_name, population
        ) or (None, None, None)
        if model_uri is None:
            return ModelLookup(
                None,
                f"no {population} model for {dataset_name}: nothing registered as {name!r} and no finished run with"
                f" one in experiment {tracking_cfg.experiment!r} at {shown}",
            )
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            booster = mlflow.xgboost.load_model(model_uri)
        finally:
            mlflow.set_tracking_uri(previous)
        metadata = _metadata(client, run_id, population)
    except Exception as exc:  # a server that went away, a model deleted under us: no comparison, not a crash
        return ModelLookup(None, redact_text(f"could not load the {population} model from {shown}: {one_line(exc)}"))
    return ModelLookup((booster, metadata), f"{source} (run {run_id})", model_uri, run_id)


def _registered(client, name: str) -> Optional[Tuple[str, str, str]]:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    if not versions:
        return None
    latest = max(versions, key=lambda v: int(v.version))
    return f"models:/{name}/{latest.version}", latest.run_id, f"registered model {name} version {latest.version}"


def _from_runs(client, experiment: str, dataset_name: str, population: str) -> Optional[Tuple[str, str, str]]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.dataset = '{dataset_name}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    for run in runs:
        model_id = run.data.tags.get(f"model_id.{population}")
        if model_id:
            return f"models:/{model_id}", run.info.run_id, f"logged model {model_id} of the latest finished run"
    return None


def _metadata(client, run_id: Optional[str], population: str) -> Dict[str, Any]:
    from kon_ray import stages
    from kon_ray.train.model_folder import METADATA_FILE, SEGMENT_STATE_FILE

    if not run_id:
        return {}
    folder = f"{stages.stage('train').folder}/{population}"  # the tracker logs the model folder's files there
    with tempfile.TemporaryDirectory(prefix="kon_model_") as scratch:
        try:
            path = client.download_artifacts(run_id, f"{folder}/{METADATA_FILE}", scratch)
        except Exception:  # a model logged without its metadata: the booster alone still serves
            return {}
        with open(path, encoding="utf-8") as handle:
            metadata = json.load(handle)
        try:  # the model's estrato/cluster inputs come from the segment state it was trained with
            state = client.download_artifacts(run_id, f"{folder}/{SEGMENT_STATE_FILE}", scratch)
            with open(state, encoding="utf-8") as handle:
                metadata["segment_state"] = json.load(handle)
        except Exception:
            pass
        return metadata
