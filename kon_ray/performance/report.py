"""The performance report: `performance_report.json` (the contract below), `performance_summary.txt` and
`performance_report.html` (kon_ray/performance/html.py), built from the passes of kon_ray/performance/data.py.

JSON shape (strict JSON; numbers are fractions in [0, 1]):
  {"kind": "kon_ray.performance.report", "version": 1, "reference": str, "current": str, "label_column": str,
   "probability_prefix": str, "classes": [str], "rows": {"reference": int, "current": int},
   "chunking": {"by": "column" | "rows" | "none", "column": str | null, "rows": int | null},
   "chunks": [ENTRY + {"alarm": bool, "alarms": [metric]}] (in order: sorted values, or row order),
   "overall": ENTRY (the whole current window), "segments": [ENTRY + {"column", "value"}] (by column, value),
   "reference_estimate": ENTRY (the reference scored as a window: its estimate against its realized values),
   "calibration": {"method", "bins", "ece_before", "ece_after" (means over classes),
                   "classes": {name: {"reference_rows", "positives", "ece_before", "ece_after"}}},
   "alarm_bands": {"chunk_rows", "reference_chunks", "rule", "accuracy": BAND | null, "macro_f1": BAND | null},
   "unreliable": bool (any chunk, segment or the overall estimate), "method": {"estimate", "band", "unseen"},
   "accuracy_change": [CHANGE] (one per segment column the reference also has; kon_ray/performance/change.py)}
  ENTRY = {"key", "rows", "estimated": {"accuracy", "macro_f1"}, "standard_error": {...}, "lower": {...},
           "upper": {...}, "realized": {...} | null (on the window's labelled rows), "labelled_rows",
           "inside": {metric: bool | null} | null (realized within [lower, upper]), "unseen_share",
           "unreliable": bool, "reasons": [str]}
  BAND = {"mean", "sd", "lower", "upper"} of the reference chunks' estimates (null with fewer than two chunks).
  CHANGE = {"by", "reference", "current", "change", "mix", "within" (mix + within = change), "segments": [{"value",
            "ref_share", "cur_share", "ref_accuracy", "cur_accuracy" (null where the window has no such row),
            "mix", "within"}] (largest within term first)}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from kon_ray.performance.change import accuracy_change, sentence
from kon_ray.performance.config import PerformanceConfig
from kon_ray.performance.data import (
    WHOLE,
    Columns,
    Dataset,
    Window,
    fit_reference,
    open_dataset,
    ordered,
    resolve_columns,
    scan,
)
from kon_ray.performance.estimator import (
    METRICS,
    Calibration,
    Estimate,
    alarms,
    estimate,
    fit_calibration,
    inside,
    reliability,
    thresholds,
)

REPORT_JSON = "performance_report.json"
SUMMARY_TXT = "performance_summary.txt"
REPORT_HTML = "performance_report.html"

METHOD = {
    "estimate": "CBPE: expected confusion matrix = sums of one-vs-rest isotonic-calibrated probabilities (normalised"
                " per row) over the rows of each predicted class; accuracy and macro F1 from it",
    "band": "estimate +/- 3 standard errors: the variance of the realized metric if each row's class were drawn"
            " from its calibrated probabilities (exact for accuracy, delta method for macro F1); calibration"
            " uncertainty not included",
    "unseen": "share of rows whose (predicted class, score bin) cell had no reference row; above unseen_threshold"
              " the estimate is unreliable",
}
ALARM_RULE = "a chunk alarms when its estimate leaves mean +/- 3 sd of the estimates of the reference cut into" \
             " chunks of the same size (only full chunks)"


def inputs(reference: str, current: str, cfg: PerformanceConfig) -> tuple[Dataset, Dataset, Columns]:
    """The footers' checks: both sides readable and not empty, the columns the estimate needs in every file."""
    ref = open_dataset(reference, "reference")
    cur = open_dataset(current, "current")
    return ref, cur, resolve_columns(ref, cur, cfg)


def build(reference: str, current: str, cfg: PerformanceConfig) -> Dict[str, Any]:
    """Read both sides, estimate, and return the report (nothing is written; every input error is a DataError
    raised before any output exists)."""
    ref, cur, columns = inputs(reference, current, cfg)
    calibration = fit_calibration(fit_reference(ref, columns, cfg))
    window = scan(cur, columns, cfg, calibration, chunk_rows=cfg.chunk_rows, chunk_column=cfg.chunk_column,
                  segment_columns=cfg.segment_columns)
    keys = ordered(list(window.chunks)) if cfg.chunk_column else list(window.chunks)
    size = reference_chunk_rows(cfg.chunk_rows, cur.rows, keys)
    # the reference's segments too, where every reference file has the column: the change in accuracy is split
    # into segment mix and within segments by them
    in_reference = [name for name in cfg.segment_columns if all(name in schema.names for schema in ref.schemas)]
    ref_window = scan(ref, columns, cfg, calibration, chunk_rows=size, segment_columns=in_reference,
                      labels_required=True)
    return assemble(
        Sources(reference, current, columns.label, columns.prefix, tuple(columns.classes),
                {"by": "column" if cfg.chunk_column else "rows" if cfg.chunk_rows else "none",
                 "column": cfg.chunk_column, "rows": cfg.chunk_rows}),
        calibration, window, keys, cfg.segment_columns, ref_window, size,
        unseen_threshold=cfg.unseen_threshold)


def reference_chunk_rows(chunk_rows: Optional[int], current_rows: int, keys: Sequence[Any]) -> int:
    """The size of the reference chunks the alarm bands come from: the current chunks' (their mean when chunked by
    a column)."""
    return chunk_rows or max(1, round(current_rows / max(len(keys), 1)))


@dataclass(frozen=True)
class Sources:
    """What the report says it compared: names of the two windows, the columns, the classes, the chunking."""

    reference: str
    current: str
    label_column: str
    probability_prefix: str
    classes: Tuple[str, ...]
    chunking: Dict[str, Any]


def assemble(sources: Sources, calibration: Calibration, window: Window, keys: Sequence[Any],
             segment_columns: Sequence[str], ref_window: Window, size: int, *,
             unseen_threshold: float) -> Dict[str, Any]:
    """The report (the module docstring's JSON) from the passes' merged partials: the current window's (chunks in
    the order of `keys`) and the reference's, cut into chunks of `size` rows for the alarm bands. Pure: the
    standalone command and InferenceReporting both end here."""
    ref_chunks = [estimate(p) for p in ref_window.chunks.values() if p.rows == size]
    bands = {name: thresholds([e.estimated[name] for e in ref_chunks]) for name in METRICS}
    chunks = []
    for key in keys:
        est = estimate(window.chunks[key])
        raised = alarms(est, bands)
        chunks.append({**entry(key, est, unseen_threshold), "alarm": bool(raised), "alarms": raised})
    segments = []
    for name in segment_columns:
        for value in ordered([v for column, v in window.segments if column == name]):
            segments.append({"column": name, "value": value,
                             **entry(value, estimate(window.segments[(name, value)]), unseen_threshold)})
    overall = entry(WHOLE, estimate(window.overall), unseen_threshold)
    # the current side from the segment entries just estimated; the reference's estimated here
    changes = [accuracy_change(name, _accuracies(ref_window, name),
                               {s["value"]: (s["rows"], s["estimated"]["accuracy"]) for s in segments
                                if s["column"] == name})
               for name in segment_columns if any(column == name for column, _ in ref_window.segments)]
    return {
        "kind": "kon_ray.performance.report", "version": 1, "reference": sources.reference,
        "current": sources.current, "label_column": sources.label_column,
        "probability_prefix": sources.probability_prefix, "classes": list(sources.classes),
        "rows": {"reference": ref_window.overall.rows, "current": window.overall.rows},
        "chunking": sources.chunking,
        "chunks": chunks, "overall": overall, "segments": segments,
        "reference_estimate": entry(WHOLE, estimate(ref_window.overall), unseen_threshold),
        "calibration": calibration_block(calibration, sources.classes),
        "alarm_bands": {"chunk_rows": size, "reference_chunks": len(ref_chunks), "rule": ALARM_RULE, **bands},
        "unreliable": any(e["unreliable"] for e in [overall, *chunks, *segments]),
        "accuracy_change": changes,
        "method": {**METHOD, "unseen_threshold": unseen_threshold, "bins": calibration.bins},
    }


def _accuracies(window: Window, column: str) -> Dict[Any, Tuple[int, float]]:
    """Each value of a segment column in `window`: (rows, estimated accuracy)."""
    return {value: (partial.rows, estimate(partial).estimated["accuracy"])
            for (name, value), partial in window.segments.items() if name == column and partial.rows}


def entry(key: Any, est: Estimate, unseen_threshold: float) -> Dict[str, Any]:
    reasons = reliability(est, unseen_threshold)
    return {"key": key, "rows": est.rows, "estimated": est.estimated, "standard_error": est.standard_error,
            "lower": est.lower, "upper": est.upper, "realized": est.realized, "labelled_rows": est.labelled,
            "inside": inside(est), "unseen_share": est.unseen_share, "unreliable": bool(reasons), "reasons": reasons}


def calibration_block(calibration: Calibration, classes: Sequence[str]) -> Dict[str, Any]:
    per = {name: {"reference_rows": c.rows, "positives": c.positives, "ece_before": c.ece_before,
                  "ece_after": c.ece_after} for name, c in zip(classes, calibration.per_class)}
    count = len(per)
    return {"method": "one-vs-rest isotonic (weighted pool-adjacent-violators over score bins), interpolated",
            "bins": calibration.bins,
            "ece_before": sum(c["ece_before"] for c in per.values()) / count,
            "ece_after": sum(c["ece_after"] for c in per.values()) / count,
            "classes": per}


def _f(value: Optional[float]) -> str:
    return "     -" if value is None else f"{value:6.3f}"


def _row(label: str, e: Dict[str, Any], flag: str = "") -> str:
    est, lo, hi = e["estimated"], e["lower"], e["upper"]
    real = e["realized"] or {}
    cells = "  ".join(f"{_f(est[m])} [{_f(lo[m])},{_f(hi[m])}] {_f(real.get(m))}" for m in METRICS)
    notes = [flag] if flag else []
    if e["unreliable"]:
        notes.append("UNRELIABLE")
    return f"{label[:20]:<20} {e['rows']:>8}  {cells}  {e['unseen_share']:6.1%}  {' '.join(notes)}".rstrip()


def summary_text(report: Dict[str, Any]) -> str:
    cal = report["calibration"]
    bands = report["alarm_bands"]
    lines = [
        f"performance estimated without labels (CBPE): {report['current']} against {report['reference']}",
        f"classes: {', '.join(report['classes'])}; rows: {report['rows']['reference']} reference,"
        f" {report['rows']['current']} current",
        f"calibration (one-vs-rest isotonic): mean ECE {cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after",
        f"alarm bands from {bands['reference_chunks']} reference chunks of {bands['chunk_rows']} rows"
        + ("" if bands["accuracy"] else " (fewer than 2: no alarms)"),
        "",
        f"{'chunk':<20} {'rows':>8}  {'accuracy [band] realized':<29}  {'macro F1 [band] realized':<29}  unseen",
    ]
    for chunk in report["chunks"]:
        lines.append(_row(str(chunk["key"]), chunk, "ALARM " + ",".join(chunk["alarms"]) if chunk["alarm"] else ""))
    lines.append(_row("overall", report["overall"]))
    if report["segments"]:
        lines.append("")
        for seg in report["segments"]:
            lines.append(_row(f"{seg['column']}={seg['value']}", seg))
    reasons = sorted({r for e in [report["overall"], *report["chunks"], *report["segments"]] for r in e["reasons"]})
    if reasons:
        lines += ["", "unreliable estimates:"] + [f"  {reason}" for reason in reasons]
    if report.get("accuracy_change"):
        lines += ["", "change in estimated accuracy, reference -> current, split into segment mix and within:"]
        lines += [f"  {sentence(change)}" for change in report["accuracy_change"]]
    alarmed = [str(c["key"]) for c in report["chunks"] if c["alarm"]]
    lines += ["", f"alarms: {', '.join(alarmed) if alarmed else 'none'}"]
    return "\n".join(lines) + "\n"


def headline(report: Dict[str, Any]) -> str:
    overall = report["overall"]
    alarmed = sum(c["alarm"] for c in report["chunks"])
    est = overall["estimated"]
    return (f"estimated accuracy {est['accuracy']:.3f}, macro F1 {est['macro_f1']:.3f}"
            f" over {overall['rows']} rows; {alarmed} of {len(report['chunks'])} chunks alarmed"
            + ("; UNRELIABLE" if report["unreliable"] else ""))

