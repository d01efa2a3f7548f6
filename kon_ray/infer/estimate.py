"""InferenceReporting's label-free performance estimate, driver side and pure (README "Performance without labels").

The current split's pass counts each population's partials in its work units (kon_ray.drift.onepass:
`performance_window`, the standalone command's `add_rows`); the test split's pass returns the class probabilities
(prediction drift needs them anyway) and, beside them, the label indices. From those the driver

1. fits each population's calibration on its labelled test rows (kon_ray.performance.estimator: one-vs-rest
   isotonic over score bins), before the current split's pass, which needs it;
2. cuts the same labelled test rows, calibrated, into chunks of the current months' mean size for the alarm bands;
3. assembles the report with the standalone command's `assemble`: per month of the dataset's date column (the
   chunks), per estrato and per cluster (the segment stage's assignments, as the predictions carry them), and the
   whole current split, each with its band, its realized value where the current split has labels, its
   unseen-region share and `unreliable` mark.

Nothing here reads a file; every number is the estimator's (no CBPE arithmetic in this module).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from kon_ray.model.score import PROB_PREFIX
from kon_ray.performance.config import InferPerformanceConfig
from kon_ray.performance.data import Window, add_rows, groups, ordered, positional_chunks
from kon_ray.performance.estimator import SLICE, Calibration, Partial, ReferenceBins, fit_calibration
from kon_ray.performance.report import Sources, assemble, reference_chunk_rows
from kon_ray.segment.state import CLUSTER, ESTRATO

SEGMENTS = (ESTRATO, CLUSTER)  # the estimate's segment columns, in the report's order
REFERENCE = "the test split"  # the windows, as the report names them
CURRENT = "the current split"


Reference = Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]  # probabilities, labels, segment values by column


def labelled(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             segments: Optional[Mapping[str, Sequence[np.ndarray]]] = None) -> Reference:
    """The test split's rows with a label the model knows (the calibration's reference), from the pass's parts:
    their probabilities, label indices and, where the pass collected them, their estrato and cluster."""
    p = np.concatenate(probs) if probs else np.empty((0, 0), np.float32)
    y = np.concatenate(labels) if labels else np.empty(0, np.int16)
    known = y >= 0
    values = {name: np.concatenate(parts)[known] for name, parts in (segments or {}).items() if parts}
    return p[known].astype(np.float64), y[known].astype(np.int64), values


def calibrate(probs: np.ndarray, labels: np.ndarray, classes: int, bins: int) -> Union[Calibration, str]:
    """The calibration fitted on the labelled reference rows, or why there is none."""
    if not len(labels):
        return "no labelled rows of this population in the test split to calibrate on"
    counts = ReferenceBins(classes, bins)
    for start in range(0, len(labels), SLICE):  # bounds the (rows, classes) temporaries
        counts.add(probs[start:start + SLICE], labels[start:start + SLICE])
    return fit_calibration(counts)


def reference_window(reference: Reference, calibration: Calibration, size: int) -> Window:
    """The labelled reference rows as a window cut into chunks of `size` rows in row order (the alarm bands), and
    per estrato and cluster where their values are known (the split of the change in accuracy)."""
    probs, labels, segments = reference
    window = Window(Partial(probs.shape[1]))
    for start in range(0, len(labels), SLICE):
        part = slice(start, start + SLICE)
        by_value = [((name, key), mask) for name, values in segments.items()
                    for key, mask in groups(pa.chunked_array([pa.array(values[part])]))]
        add_rows(window, calibration, probs[part], labels[part],
                 positional_chunks(start, len(labels[part]), size), by_value)
    return window


def population_report(classes: Sequence[str], calibration: Calibration, reference: Reference,
                      window: Window, cfg: InferPerformanceConfig, target: Optional[str],
                      date_column: Optional[str]) -> Dict[str, Any]:
    """One population's report, in the standalone command's schema (kon_ray/performance/report.py); chunking
    `{"by": "month", "column": <date column>}`, or one chunk when the current split has no date column."""
    keys = ordered(list(window.chunks))
    size = reference_chunk_rows(None, window.overall.rows, keys)
    sources = Sources(REFERENCE, CURRENT, target or "", PROB_PREFIX, tuple(classes),
                      {"by": "month" if date_column else "none", "column": date_column, "rows": None})
    return assemble(sources, calibration, window, keys, SEGMENTS, reference_window(reference, calibration, size),
                    size, unseen_threshold=cfg.unseen_threshold)


def metrics(population: str, report: Mapping[str, Any]) -> Dict[str, float]:
    """The estimate's MLflow metrics, `performance/<population>/...`: the whole split's estimates, band, realized
    values, guards and calibration error; per month, estrato and cluster the estimated and realized accuracy (and a
    month's alarm). About 10 + 2-3 per chunk and segment a population."""
    base = f"performance/{population}"
    overall = report["overall"]
    out: Dict[str, float] = {
        f"{base}/estimated_accuracy": overall["estimated"]["accuracy"],
        f"{base}/estimated_macro_f1": overall["estimated"]["macro_f1"],
        f"{base}/accuracy_lower": overall["lower"]["accuracy"],
        f"{base}/accuracy_upper": overall["upper"]["accuracy"],
        f"{base}/unseen_share": overall["unseen_share"],
        f"{base}/unreliable": float(report["unreliable"]),
        f"{base}/ece_before": report["calibration"]["ece_before"],
        f"{base}/ece_after": report["calibration"]["ece_after"],
        f"{base}/chunk_alarms": float(sum(c["alarm"] for c in report["chunks"])),
    }
    out.update(_realized(base, overall, ("accuracy", "macro_f1")))
    for chunk in report["chunks"]:
        name = f"{base}/month/{_key(chunk['key'])}"
        out[f"{name}/estimated_accuracy"] = chunk["estimated"]["accuracy"]
        out[f"{name}/alarm"] = float(chunk["alarm"])
        out.update(_realized(name, chunk, ("accuracy",)))
    for segment in report["segments"]:
        name = f"{base}/{segment['column']}/{_key(segment['value'])}"
        out[f"{name}/estimated_accuracy"] = segment["estimated"]["accuracy"]
        out.update(_realized(name, segment, ("accuracy",)))
    return out


def _realized(name: str, entry: Mapping[str, Any], which: Sequence[str]) -> Dict[str, float]:
    realized = entry["realized"] or {}
    return {f"{name}/realized_{m}": realized[m] for m in which if realized.get(m) is not None}


def _key(value: Any) -> str:
    return "missing" if value is None else str(value)


def document(reports: Mapping[str, Dict[str, Any]], unavailable: Mapping[str, str]) -> Dict[str, Any]:
    """performance_report.json: each population's report (the standalone schema), and why a population has none."""
    return {"kind": "kon_ray.infer.performance", "version": 1, "populations": dict(reports),
            "unavailable": dict(unavailable)}


__all__: List[str] = ["labelled", "calibrate", "reference_window", "population_report", "metrics", "document",
                      "SEGMENTS"]
