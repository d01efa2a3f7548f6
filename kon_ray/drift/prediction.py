"""Prediction drift: the same statistics on a model's predicted class probabilities, reference vs current.

`prediction_drift` compares two windows' probabilities given as data; InferenceReporting instead counts them in its
scoring pass (kon_ray/infer/onepass.py) and both end in `report_block`. Before training, the drift stage asks the
tracking registry for each population's latest model (`find_models`); when there is none it says why instead of
failing.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from kon_ray.drift.compare import compare
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.engine import fit_reference, summarise_current
from kon_ray.drift.severity import SEVERITIES


def prediction_drift(ref_probs, cur_probs, cfg: DriftConfig, columns: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Drift of predicted class probabilities (one numeric column per class) between two windows.

    Args:
        ref_probs, cur_probs: pandas DataFrames, Ray Datasets or Parquet paths with the same probability columns.
        cfg: the drift config (bins, thresholds).
        columns: the probability columns; default every column of ref_probs.
    Returns:
        {"available": True, "severity": worst class severity, "psi_max", "features": [per-class results]}.
    """
    numeric_cfg = DriftConfig(**{**cfg.__dict__, "column_types": {}})  # probabilities are numeric, always
    reference = fit_reference(ref_probs, numeric_cfg, columns=columns, label="reference predictions")
    current = summarise_current(reference, cur_probs, numeric_cfg, label="current predictions")
    return report_block(reference, current, numeric_cfg)


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


def find_models(dataset: str, tracking_cfg) -> Tuple[Dict[str, Tuple[Any, Dict]], str]:
    """({population: (booster, metadata)}, reasons) from the tracking registry. Never raises."""
    try:
        from kon_ray.tracking.registry import find_latest_model  # the tracking stage's registry, when present
    except ImportError as exc:
        return {}, f"no model available: model registry not installed ({exc.name or exc})"
    from kon_ray.config import POPULATIONS

    found, reasons = {}, []
    for population in POPULATIONS:
        try:
            lookup = find_latest_model(dataset, population, tracking_cfg)
        except Exception as exc:  # a registry that cannot answer must not stop the drift check
            reasons.append(f"{population}: registry error ({type(exc).__name__}: {exc})")
            continue
        if lookup.model is None:
            reasons.append(f"{population}: {lookup.reason}")
        else:
            found[population] = lookup.model
    return found, "no model available: " + "; ".join(reasons) if not found else ""


SEGMENT_COLUMNS = ("estrato", "cluster")  # model inputs the segment stage adds; not in the features folder


def _score(batch, booster, features: Sequence[str], classes: Sequence[Any], population: str,
           population_column: str, segment_state: Optional[Dict[str, Any]] = None):
    import pandas as pd
    import xgboost

    batch = batch[batch[population_column] == population]
    if segment_state:
        from kon_ray.segment.state import SegmentState, assign_segments

        batch = assign_segments(batch, SegmentState.from_dict(segment_state))
    probs = booster.predict(xgboost.DMatrix(batch[list(features)].astype("float64")))
    if probs.ndim == 1:  # binary objective: P(class 1)
        probs = np.column_stack([1 - probs, probs])
    classes = classes or range(probs.shape[1])
    return pd.DataFrame({f"proba_{c}": probs[:, i] for i, c in enumerate(classes)})


def _class_labels(metadata: Dict[str, Any]) -> List[Any]:
    """Labels in the model's class order: `class_labels`, else the values of the {index: label} `classes`."""
    if metadata.get("class_labels"):
        return list(metadata["class_labels"])
    classes = metadata.get("classes") or []
    if isinstance(classes, dict):
        return [classes[k] for k in sorted(classes, key=int)]
    return list(classes)


def _input_columns(features: Sequence[str], segment_state: Optional[Dict[str, Any]]) -> List[str]:
    """The columns to read for the model: its features, with estrato/cluster replaced by their raw inputs."""
    if not segment_state:
        return list(features)
    raw = [c for c in features if c not in SEGMENT_COLUMNS]
    inputs = ([segment_state.get("estrato_column")] if segment_state.get("estrato_column") else []) + list(
        segment_state.get("cluster_features") or []
    )
    return list(dict.fromkeys(raw + inputs))


def model_prediction_drift(models: Dict[str, Tuple[Any, Dict]], reference, current, cfg: DriftConfig,
                           population_column: str = "population") -> Dict[str, Any]:
    """Score both windows with each population's booster (Ray map_batches) and compare class probabilities."""
    from kon_ray.drift.engine import as_source

    per_population = {}
    for population, (booster, metadata) in models.items():
        features = list(metadata.get("features") or metadata.get("feature_names") or booster.feature_names or [])
        classes = _class_labels(metadata)
        segment_state = metadata.get("segment_state") if set(SEGMENT_COLUMNS) & set(features) else None
        scored = []
        for data, label in ((reference, "reference"), (current, "current")):
            ds = as_source(data, label).to_dataset(_input_columns(features, segment_state) + [population_column])
            scored.append(ds.map_batches(_score, fn_kwargs={"booster": booster, "features": features,
                                                            "classes": classes, "population": population,
                                                            "population_column": population_column,
                                                            "segment_state": segment_state},
                                         batch_format="pandas"))
        per_population[population] = prediction_drift(scored[0], scored[1], cfg)
    worst = max((r["severity"] for r in per_population.values()), key=SEVERITIES.index, default="NONE")
    return {"available": True, "severity": worst,
            "psi_max": max(r["psi_max"] for r in per_population.values()),
            "features": [dict(f, name=f"{p}/{f['name']}") for p, r in per_population.items() for f in r["features"]]}
