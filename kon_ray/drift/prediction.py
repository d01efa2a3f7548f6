"""Prediction drift: the same statistics on a model's predicted class probabilities, reference vs current.

`prediction_drift` is what InferenceReporting calls once it has scored both windows. Before training, the drift
stage asks the tracking registry for the latest model (`find_model`); when there is none it says why instead of
failing.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

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
    features = compare(reference, current, numeric_cfg)
    worst = max((f["severity"] for f in features), key=SEVERITIES.index, default="NONE")
    return {
        "available": True,
        "severity": worst,
        "psi_max": max((f["psi"] for f in features), default=0.0),
        "features": features,
    }


def not_available(reason: str) -> Dict[str, Any]:
    return {"available": False, "severity": None, "reason": reason}


def find_model(dataset: str) -> Tuple[Any, str]:
    """(model, "") from the tracking registry, or (None, why not). Never raises."""
    try:
        from kon_ray.tracking.registry import latest_model  # provided by the tracking stage, when present
    except ImportError as exc:
        return None, f"no model available: model registry not installed ({exc.name or exc})"
    try:
        model = latest_model(dataset)
    except Exception as exc:  # a registry that cannot answer must not stop the drift check
        return None, f"no model available: registry error ({type(exc).__name__}: {exc})"
    if model is None:
        return None, f"no model available: none registered for dataset {dataset}"
    if not hasattr(model, "predict_proba"):
        return None, f"no model available: {type(model).__name__} has no predict_proba"
    return model, ""


def _score(batch, model, features: Sequence[str]):
    import pandas as pd

    probs = model.predict_proba(batch[list(features)])
    classes = getattr(model, "classes_", range(probs.shape[1]))
    return pd.DataFrame({f"proba_{c}": probs[:, i] for i, c in enumerate(classes)})


def model_prediction_drift(model: Any, reference, current, cfg: DriftConfig, features: Sequence[str]) -> Dict[str, Any]:
    """Score both windows with `model` in Ray (map_batches) and compare the class probabilities."""
    from kon_ray.drift.engine import as_source

    features = list(getattr(model, "feature_names_in_", features))
    scored = []
    for data, label in ((reference, "reference"), (current, "current")):
        ds = as_source(data, label).to_dataset(features)
        scored.append(ds.map_batches(_score, fn_kwargs={"model": model, "features": features},
                                     batch_format="pandas"))
    return prediction_drift(scored[0], scored[1], cfg)
