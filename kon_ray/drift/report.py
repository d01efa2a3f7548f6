"""The drift report: `drift_report.json` (the contract below), `drift_summary.txt` and `drift_report.html`.

JSON shape:
  {"kind": "kon_ray.drift.report", "version": 1, "reference": str, "current": str,
   "rows": {"reference": int, "current": int},
   "summary": {"features", "drifted", "drifted_share", "severity_counts": {NONE, LOW, MODERATE, HIGH},
               "top_drifted": [{"name", "severity", "psi"}] (at most 10),
               "prediction_drift": {"available", "severity", "psi_max", "features": [per class, named
                                    <population>/prob_<label>], "models": [{"population", "name", "version", "uri",
                                    "run_id"}], "not_checked": {population: why}} or {"available": false,
                                    "severity": null, "reason", "models"},
               each statistic's own entries (kon_ray/drift/statistics.py; KS: "ks_bound_max",
               "ks_bound_exceeded": [names]), "drift_flag": bool, "thresholds": {its threshold keys, "drift_share"}},
   "features": [{"name", "type": numeric|categorical, "psi", "test": ks|chi2, "statistic", "p_value",
                 "p_value_adjusted", "severity", "effect_size", "effect_size_name": ks_d|cramers_v,
                 "reference_rows", "current_rows", "reference_missing", "current_missing",
                 "notes": [why a number is null],
                 numeric: "ks_upper", "ks_exact", "bins": {"edges", "labels", "reference", "current"} (the finite
                 values' bins, then -inf, +inf, missing);
                 categorical: "dof", "categories": {"count", "labels", "reference", "current"},
                 with drift.segment_columns: "attribution": [{"by": segment column, "joint", "mix", "within",
                 "mix_only_psi", "within_only_psi", "mix_share", "within_share" (mix_share + within_share = psi),
                 "segments": [{"value" (null = missing), "ref_share", "cur_share", "within", "psi" (null: no rows on
                 a side), "reference_rows", "current_rows"}] (by within, descending),
                 "table": {"segments", "bins" (labels), "reference", "current" (counts [segment][bin])}}]
                 (kon_ray/drift/attribution.py; every number recomputes from "table"), or {"by", "reason"}}],
   "skipped": [{"name", "reason"}]}
Strict JSON: undefined numbers (a KS test on a column with no values) are null, with the reason in "notes".
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence

from kon_ray.drift import statistics
from kon_ray.drift.severity import SEVERITIES

# The files a drift check writes (kon_ray/drift/check.py), named once here; every reader imports these.
REPORT_JSON = "drift_report.json"  # the contract above (read by kon_ray/tracking/outputs.py)
SUMMARY_TXT = "drift_summary.txt"  # summary_text(); the gate's error names it
REPORT_HTML = "drift_report.html"  # kon_ray/drift/html.py
REFERENCE_SUMMARY = "reference_summary.json"  # kon_ray/drift/reference.py (reused by reference_summary=PATH)


def build_report(features: List[Dict[str, Any]], summary: Dict[str, Any], reference: str, current: str,
                 rows: Dict[str, int], skipped: Sequence[Dict[str, str]] = ()) -> Dict[str, Any]:
    return {"kind": "kon_ray.drift.report", "version": 1, "reference": reference, "current": current,
            "rows": rows, "summary": summary, "features": features, "skipped": list(skipped)}


def edge_texts(edges: Sequence[float]) -> List[str]:
    """The edges as short numbers, with just enough significant digits (at least 3) that neighbours differ."""
    for digits in range(3, 18):
        texts = [_number(x, digits) for x in edges]
        if all(a != b for a, b in zip(texts, texts[1:])):
            return texts
    return [repr(float(x)) for x in edges]


def _number(x: float, digits: int) -> str:
    text = format(float(x) + 0.0, f".{digits}g")  # + 0.0: no "-0"
    if "e" in text:  # 1.1e+03 -> 1.1e3: shorter, and still what Python and numpy read back
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def bin_labels(edges: Sequence[float]) -> List[str]:
    """Labels of a numeric feature's PSI bins, in the order of its counts: the finite values' right-closed bins on
    the interior edges, then -inf, +inf and missing."""
    if not len(edges):
        return ["finite", "-inf", "+inf", "missing"]
    e = edge_texts(edges)
    return ([f"\u2264 {e[0]}"] + [f"({a}, {b}]" for a, b in zip(e, e[1:])] + [f"> {e[-1]}"]
            + ["-inf", "+inf", "missing"])


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        width = spec[: len(spec) - len(spec.lstrip("0123456789"))]  # the spec's leading width digits
        return "-".rjust(int(width) if width else 1)
    if isinstance(value, float) and spec.endswith("g"):
        return format(value, spec)
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _p(value: Any) -> str:
    if value is None:
        return "-"
    return "<1e-300" if value == 0 else (f"{value:.2e}" if value < 1e-3 else f"{value:.4f}")


def headline(report: Dict[str, Any]) -> str:
    s = report["summary"]
    verdict = "DRIFT FLAG RAISED" if s["drift_flag"] else "no overall drift"
    return (f"{s['drifted']} of {s['features']} features drifted ({s['drifted_share']:.1%};"
            f" flag above {s['thresholds']['drift_share']:.0%}) -> {verdict}")


def prediction_line(prediction: Dict[str, Any]) -> str:
    """One line: the severity (or why it was not checked), and with which registered model versions."""
    if not prediction.get("available"):
        return f"prediction drift: not checked ({prediction.get('reason', 'no model available')})"
    models = [m for m in prediction.get("models", [])
              if m.get("population") not in prediction.get("not_checked", {})]
    names = ", ".join(f"{m['name']} version {m['version']}" for m in models)
    scored = f" with {names}" if models else ""
    line = (f"prediction drift: {prediction['severity']} (max PSI {prediction['psi_max']:.4f} over"
            f" {len(prediction['features'])} class probabilities){scored}")
    skipped = prediction.get("not_checked") or {}
    if skipped:
        line += "; not checked: " + "; ".join(f"{p}: {why}" for p, why in skipped.items())
    if prediction.get("severity") == "HIGH":
        line += " -> raises the drift flag"
    return line


TOP_EXPLAINED = 5  # features whose drift the summary and the page explain in words (issue 30)


def explained(report: Dict[str, Any], top: int = TOP_EXPLAINED) -> List[Dict[str, Any]]:
    """The most drifted features (MODERATE or HIGH, by severity then PSI) that have attribution numbers."""
    return [f for f in sorted(report["features"], key=_order)
            if f["severity"] in ("HIGH", "MODERATE") and any("mix_share" in a for a in f.get("attribution", ()))
            ][:top]


def segment_name(by: str, value: Any) -> str:
    return f"{by} {'(missing)' if value is None else value}"


def attribution_sentences(feature: Dict[str, Any]) -> List[str]:
    """One sentence per segment column: "72% of kwh_m12's PSI is the segment mix (by estrato); within segments,
    estrato 6 moved most" (the Shapley shares of kon_ray/drift/attribution.py, which add up to the PSI)."""
    out = []
    psi = feature["psi"]
    for a in feature.get("attribution", ()):
        if "mix_share" not in a or psi <= 0:
            continue
        line = (f"{a['mix_share'] / psi:.0%} of {feature['name']}'s PSI {psi:.3f} is the {a['by']} mix,"
                f" {a['within_share'] / psi:.0%} change within {a['by']} segments")
        if a["segments"] and a["segments"][0]["within"] > 0:
            first = a["segments"][0]
            line += f"; within segments, {segment_name(a['by'], first['value'])} moved most"
            if first["reference_rows"] == 0:
                line += " (new in the current data)"
        out.append(line)
    return out


def summary_text(report: Dict[str, Any], top: int = 20) -> str:
    """A plain-text summary that reads well in a terminal or a log."""
    s = report["summary"]
    lines = [
        f"kon_ray drift check: {headline(report)}",
        f"reference: {report['reference']} ({report['rows']['reference']:,} rows)",
        f"current:   {report['current']} ({report['rows']['current']:,} rows)",
        "severity:  " + ", ".join(f"{k} {s['severity_counts'][k]}" for k in reversed(SEVERITIES)),
        prediction_line(s["prediction_drift"]),
    ]
    lines += [line for statistic in statistics.STATISTICS for line in statistic.text(s)]
    lines += [f"not analysed: {item['name']} ({item['reason']})" for item in report.get("skipped", [])]
    lines.append("")
    ordered = sorted(report["features"], key=_order)
    width = max([len("feature")] + [len(f["name"]) for f in ordered[:top]])
    lines.append(f"{'feature':<{width}}  {'type':<11}  {'PSI':>8}  test  {'stat':>10}  {'p':>9}  {'p (BH)':>9}"
                 f"  {'effect':>7}  severity")
    for f in ordered[:top]:
        lines.append(
            f"{f['name']:<{width}}  {f['type']:<11}  {f['psi']:8.4f}  {f['test']:<4}  {_fmt(f['statistic'], '10.4g')}"
            f"  {_p(f['p_value']):>9}  {_p(f['p_value_adjusted']):>9}  {_fmt(f['effect_size'], '7.4f')}"
            f"  {f['severity']}"
        )
    if len(ordered) > top:
        lines.append(f"... {len(ordered) - top} more features in {REPORT_JSON}")
    why = [sentence for f in explained(report) for sentence in attribution_sentences(f)]
    if why:
        lines += ["", "why (segment mix or change within segments; attribution in " + REPORT_JSON + "):"]
        lines += [f"  {sentence}" for sentence in why]
    return "\n".join(lines) + "\n"


def _order(feature: Dict[str, Any]):
    return (-SEVERITIES.index(feature["severity"]), -feature["psi"], feature["name"])


def report_json(report: Dict[str, Any]) -> str:
    """The report as strict JSON: every number in it is finite or null (a NaN or inf here is a bug, not a token to
    write); numpy scalars and arrays as Python numbers and lists."""
    return json.dumps(report, indent=2, allow_nan=False, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


