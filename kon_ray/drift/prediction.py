"""Prediction drift: the drift statistics on the models' class probabilities, reference vs current.

One scorer everywhere: InferenceReporting's (kon_ray.infer.score.score_batch, run per work unit by
kon_ray.infer.onepass; columns `prob_<label>`). The reference pass returns each population's probabilities, the
driver fits their reference summary exactly, the current pass counts its probabilities on the reference's edges
(`onepass.prediction_drift`), and `report_block` compares them as the drift contract says. Two places use it:

- DriftCheck (kon_ray.drift.stage): the reference window against the current window, scored with each
  population's registered model `<dataset>-<population>` (its latest version, or `drift.prediction_model`).
  `resolve` finds which version that is without loading anything (the drift stage's cache key holds it);
  `load_bundles` loads exactly that version. When there is none, or the registry cannot answer, the report says
  why instead of failing.
- InferenceReporting (kon_ray.infer.stage): the run's own models, test split against current split.

In both, HIGH prediction drift raises the overall drift flag, and `drift.fail_on_drift=true` then stops the run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from kon_ray.drift.compare import compare
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.severity import SEVERITIES


def report_block(reference, current: dict, cfg: DriftConfig) -> Dict[str, Any]:
    """The report's prediction-drift block from a fitted reference and the current counts on its edges:
    {"available": True, "severity": worst class severity, "psi_max", "features": [per-class results]}."""
    features = compare(reference, current, cfg)
    worst = max((f["severity"] for f in features), key=SEVERITIES.index, default="NONE")
    return {
        "available": True,
        "severity": worst,
        "psi_max": max((f["psi"] for f in features), default=0.0),
        "features": features,
    }


def not_available(reason: str) -> Dict[str, Any]:
    return {"available": False, "severity": None, "reason": reason}


def is_high(block: Mapping[str, Any]) -> bool:
    """Whether a prediction-drift block raises the overall drift flag (HIGH, as the drift contract says)."""
    return bool(block.get("available")) and block.get("severity") == "HIGH"


def combine(blocks: Mapping[str, Mapping[str, Any]], models: Sequence[Dict[str, Any]] = (),
            unscored: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """One block from the populations' blocks: features named `<population>/prob_<label>`, the worst severity,
    the largest PSI; `models` (what scored) and `not_checked` ({population: why}) say what it covers."""
    done = {p: b for p, b in blocks.items() if b.get("available")}
    skipped = dict(unscored or {}) | {p: str(b.get("reason", "")) for p, b in blocks.items() if not b.get("available")}
    if not done:
        reason = "; ".join(f"{p}: {why}" for p, why in skipped.items()) or "no model available"
        return dict(not_available(reason), models=list(models))
    out: Dict[str, Any] = {
        "available": True,
        "severity": max((b["severity"] for b in done.values()), key=SEVERITIES.index),
        "psi_max": max(b["psi_max"] for b in done.values()),
        "features": [dict(f, name=f"{p}/{f['name']}") for p, b in done.items() for f in b["features"]],
        "models": list(models),
    }
    if skipped:
        out["not_checked"] = skipped
    return out


# --- which registered model DriftCheck scores with ------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredModel:
    """One version of a registered model: `<dataset>-<population>` version `version`."""

    population: str
    name: str
    version: str
    run_id: Optional[str] = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> Dict[str, Any]:
        return {"population": self.population, "name": self.name, "version": self.version, "uri": self.uri,
                "run_id": self.run_id}


@dataclass(frozen=True)
class Resolution:
    """The registered models DriftCheck will score with, and why any population has none."""

    models: Tuple[RegisteredModel, ...] = ()
    missing: Tuple[Tuple[str, str], ...] = ()  # (population, why it has no model)

    def key_material(self) -> Optional[Dict[str, str]]:
        """{population: "<name>/<version>"}: what the drift stage's key holds; None without any model."""
        return {m.population: f"{m.name}/{m.version}" for m in self.models} or None

    def reason(self) -> str:
        return "; ".join(f"{population}: {why}" for population, why in self.missing)


def resolve(dataset_name: str, tracking_cfg, pinned: Optional[str] = None) -> Resolution:
    """Which version of `<dataset>-<population>` each population would be scored with: the latest, a pinned version
    number, or the version an `@alias` points at. Registry look-ups only (nothing is downloaded); never raises."""
    from kon_ray.config import POPULATIONS

    def nobody(why: str) -> Resolution:
        return Resolution(missing=tuple((p, why) for p in POPULATIONS))

    if not tracking_cfg.enabled:
        return nobody("tracking is off (tracking.enabled=false), so there is no model registry to take a model from")
    from kon_ray.secrets import redact_text
    from kon_ray.tracking.common import import_mlflow, one_line
    from kon_ray.tracking.names import registered_name
    from kon_ray.tracking.uri import resolve_uri

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


def load_bundles(resolution: Resolution, tracking_cfg) -> Tuple[List[Any], Dict[str, str]]:
    """([ModelBundle], {population: why not}) for exactly the versions `resolution` names. Never raises."""
    from kon_ray.infer.score import ModelBundle
    from kon_ray.secrets import redact_text
    from kon_ray.segment.state import SegmentState
    from kon_ray.tracking.common import import_mlflow, one_line
    from kon_ray.tracking.uri import resolve_uri

    uri = resolve_uri(tracking_cfg.uri)
    bundles, failed = [], {}
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
    import tempfile

    from mlflow.tracking import MlflowClient

    from kon_ray.train.model_folder import METADATA_FILE, SEGMENT_STATE_FILE

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


__all__ = ["report_block", "not_available", "is_high", "combine", "RegisteredModel", "Resolution", "resolve",
           "load_bundles"]
