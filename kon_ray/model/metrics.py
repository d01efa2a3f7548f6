"""Classification metrics from counts: a shard returns a confusion matrix and a log-loss sum, the driver adds them
up, and every reported number (accuracy, macro F1, per-class precision/recall, log loss, per-group metrics) is
derived from the merged counts, so the result does not depend on how the data was split.

Conventions (the same as scikit-learn's with zero_division=0): a class never predicted has precision 0; a class
absent from the data has recall 0 and is left out of the macro average only if it is neither present nor predicted.
Log loss clips the true class's probability to [1e-15, 1] (XGBoost's and scikit-learn's epsilon).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

EPS = 1e-15


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k x k) int64 counts: rows = true class, columns = predicted class."""
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k).astype(np.int64)


def logloss_sum(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Sum over rows of -log p(true class), p clipped to [EPS, 1]."""
    if len(y_true) == 0:
        return 0.0
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(y_true)), np.asarray(y_true)]
    return float(-np.log(np.clip(p, EPS, 1.0)).sum())


def partial(y_true: np.ndarray, probs: np.ndarray, groups: Mapping[str, np.ndarray], k: int) -> Dict[str, Any]:
    """One shard's counts: confusion, log-loss sum, and a confusion matrix per value of each grouping column.
    The prediction is the most probable class (the lowest index on a tie, as numpy's argmax)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(probs).argmax(axis=1) if len(y_true) else np.empty(0, np.int64)
    out: Dict[str, Any] = {
        "n": int(len(y_true)),
        "confusion": confusion_counts(y_true, y_pred, k).tolist(),
        "logloss_sum": logloss_sum(y_true, probs),
        "groups": {},
    }
    for name, values in groups.items():
        values = np.asarray(values)
        out["groups"][name] = {
            str(v): confusion_counts(y_true[values == v], y_pred[values == v], k).tolist() for v in np.unique(values)
        }
    return out


def merge(parts: Iterable[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """Add partials up (exact: integer counts and one float sum)."""
    merged: Optional[Dict[str, Any]] = None
    for p in parts:
        if merged is None:
            merged = {"n": 0, "confusion": np.zeros_like(np.array(p["confusion"])), "logloss_sum": 0.0, "groups": {}}
        merged["n"] += p["n"]
        merged["confusion"] = merged["confusion"] + np.array(p["confusion"])
        merged["logloss_sum"] += p["logloss_sum"]
        for name, by_value in p["groups"].items():
            target = merged["groups"].setdefault(name, {})
            for value, matrix in by_value.items():
                target[value] = target.get(value, 0) + np.array(matrix)
    if merged is not None:
        merged["confusion"] = np.asarray(merged["confusion"]).tolist()
        merged["groups"] = {n: {v: np.asarray(m).tolist() for v, m in g.items()} for n, g in merged["groups"].items()}
    return merged


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    ratio: np.ndarray = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return ratio


def from_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> Dict[str, Any]:
    """Accuracy, macro F1 and per-class precision/recall/F1/support from a confusion matrix."""
    cm = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    seen = (support + predicted) > 0
    n = int(cm.sum())
    return {
        "rows": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(support[i]), "predicted": int(predicted[i])}
            for i, label in enumerate(labels)
        },
    }


def summarize(merged: Mapping[str, Any], labels: Sequence[str], majority_class: str) -> Dict[str, Any]:
    """The report's metrics for one population and split, from merged counts."""
    out = from_confusion(merged["confusion"], labels)
    n = merged["n"]
    out["log_loss"] = merged["logloss_sum"] / n if n else None
    out["confusion"] = {"labels": list(labels), "matrix": merged["confusion"]}
    out["baseline"] = baseline(merged["confusion"], labels, majority_class)
    out["by"] = {}
    for name, by_value in merged["groups"].items():
        out["by"][name] = {}
        for value in sorted(by_value, key=_numeric_key):
            group = from_confusion(by_value[value], labels)
            group["baseline_accuracy"] = baseline(by_value[value], labels, majority_class)["accuracy"]
            group.pop("per_class")
            out["by"][name][value] = group
    return out


def baseline(confusion: Sequence[Sequence[int]], labels: Sequence[str], majority_class: str) -> Dict[str, Any]:
    """Accuracy of always predicting the training majority class: its share of the evaluated records."""
    cm = np.asarray(confusion, dtype=np.int64)
    n = int(cm.sum())
    support = int(cm[list(labels).index(majority_class)].sum())
    return {"majority_class": majority_class, "accuracy": support / n if n else 0.0}


def majority(class_counts: Mapping[str, int]) -> str:
    """The most frequent training class (the first label in sort order on a tie)."""
    return sorted(class_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _numeric_key(value: str) -> Tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


__all__: List[str] = [
    "confusion_counts", "logloss_sum", "partial", "merge", "from_confusion", "summarize", "baseline", "majority",
]
