"""Prediction drift: the drift statistics on the models' class probabilities, reference vs current.

One scorer everywhere: InferenceReporting's (kon_ray.model.score.score_batch, run per work unit by
kon_ray.drift.onepass; columns `prob_<label>`). The reference pass returns each population's probabilities, the
driver fits their reference summary exactly, the current pass counts its probabilities on the reference's edges
(`onepass.prediction_drift`), and `report_block` compares them as the drift contract says. Two places use it:

- DriftCheck (kon_ray.drift.stage): the reference window against the current window, scored with each
  population's registered model `<dataset>-<population>` (its latest version, or `drift.prediction_model`).
  The pipeline finds which version that is while it plans (kon_ray.tracking.registry.resolve: the drift stage's
  cache key holds it) and hands the loaded models to the stage in its run context (`RunContext.models`). When there
  is none, or the registry cannot answer, the report says why instead of failing.
- InferenceReporting (kon_ray.infer.stage): the run's own models, test split against current split.

In both, HIGH prediction drift raises the overall drift flag, and `drift.fail_on_drift=true` then stops the run.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

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


__all__ = ["report_block", "not_available", "is_high", "combine"]
