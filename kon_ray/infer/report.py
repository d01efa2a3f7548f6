"""A population's report as a dict (reports/<population>.json), from merged metric counts and the model.

The names of everything InferenceReporting writes are here, once (kon_ray/infer/stage.py writes them; readers import
them): `PREDICTIONS`/<split>/part-<unit>.parquet (the part names: kon_ray.storage.part_name), per population
`REPORT_JSON` and `REPORT_HTML`, and `PERFORMANCE_JSON`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from kon_ray.model import metrics

PREDICTIONS = "predictions"  # reports/predictions/{test,current}/part-<unit>.parquet
REPORT_JSON = "{population}.json"  # this dict, per population: REPORT_JSON.format(population=...)
REPORT_HTML = "{population}.html"  # the same as a self-contained page (kon_ray/infer/html.py)
PERFORMANCE_JSON = "performance_report.json"  # the label-free estimate of every population (kon_ray/infer/estimate.py)

TOP_FEATURES = 20


def feature_importance(booster, top: int = TOP_FEATURES) -> List[Dict[str, Any]]:
    """The `top` features by total gain (XGBoost's importance_type="total_gain" would weight by split count;
    "gain" is the average gain per split, which is what Kon's reports have always shown)."""
    scores = booster.get_score(importance_type="gain")
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"feature": name, "gain": float(value)} for name, value in ranked]


def build_report(
    dataset: str,
    population: str,
    metadata: Mapping[str, Any],
    merged_by_split: Mapping[str, Mapping[str, Any]],
    importance: List[Dict[str, Any]],
    prediction_drift: Mapping[str, Any],
    performance: Mapping[str, Any],
) -> Dict[str, Any]:
    """`performance`: the population's label-free estimate (kon_ray/performance/report.py's schema), or
    {"unavailable": reason}."""
    labels = list(metadata["class_labels"])
    majority_class = metrics.majority(metadata["class_counts"])
    splits = {}
    for split, merged in merged_by_split.items():
        summary = metrics.summarize(merged, labels, majority_class)
        summary["unknown_label_rows"] = merged.get("unknown_label_rows", 0)
        splits[split] = summary
    return {
        "dataset": dataset,
        "population": population,
        "model": {
            "classes": labels,
            "majority_class": majority_class,
            "best_iteration": metadata.get("best_iteration"),
            "rounds_trained": metadata.get("rounds_trained"),
            "train_class_counts": dict(metadata["class_counts"]),
        },
        "splits": splits,
        "feature_importance": importance,
        "prediction_drift": dict(prediction_drift),
        "performance": dict(performance),
        # HIGH prediction drift raises the overall drift flag (README, "Drift: the contract")
        "drift_flag": bool(prediction_drift.get("available")) and prediction_drift.get("severity") == "HIGH",
    }
