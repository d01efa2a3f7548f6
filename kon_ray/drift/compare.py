"""From the merged reference and current counts to one result per feature and the run's summary (pure).

Each feature gets PSI, its test (KS for numeric, chi-squared for categorical), the raw and Benjamini-Hochberg
adjusted p-values, an effect size (numeric: the KS statistic D itself, the largest gap between the two CDFs;
categorical: Cramer's V) and a severity (kon_ray.drift.severity).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from kon_ray import execution
from kon_ray.drift.attribution import attribute
from kon_ray.drift.chi2 import chi2_homogeneity
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.ks import ks_from_slots, ks_pvalue, ks_pvalues
from kon_ray.drift.psi import psi
from kon_ray.drift.reference import ReferenceSummary
from kon_ray.drift.report import bin_labels
from kon_ray.drift.severity import DRIFTED, SEVERITIES, adjust_pvalues, overall_flag, severity

MAX_CATEGORIES_IN_REPORT = 50  # the statistics use every category; the JSON lists the largest ones
TOP_DRIFTED = 10


def _num(value: float) -> Optional[float]:
    """JSON-safe float: NaN (undefined) becomes null."""
    return None if value is None or not np.isfinite(value) else float(value)


def numeric_feature(name: str, ref, cur_slots: np.ndarray, cur_psi: np.ndarray, cfg: DriftConfig,
                    p_value: Optional[float] = None) -> Dict[str, Any]:
    """`p_value`: the KS p-value when the caller computed it already (compare() does, for all features at once)."""
    d_low, d_up = ks_from_slots(ref.ks_slots, cur_slots)
    n, m = int(ref.ks_slots[:-1].sum()), int(cur_slots[:-1].sum())
    if p_value is None:
        p_value = ks_pvalue(d_low, n, m)
    psi_value = psi(ref.psi_counts, cur_psi, cfg.psi_epsilon)
    notes = []
    if not np.isfinite(d_low):
        side = "reference" if n == 0 else "current"
        notes.append(f"KS undefined (statistic, p_value, effect_size, ks_upper null): no non-missing {side} value")
    return {
        "name": name,
        "type": "numeric",
        "psi": psi_value,
        "test": "ks",
        "statistic": _num(d_low),
        "p_value": _num(p_value),
        "p_value_adjusted": None,
        "severity": severity(psi_value, p_value, cfg),
        "effect_size": _num(d_low),
        "effect_size_name": "ks_d",
        "ks_upper": _num(d_up),  # the exact D lies in [statistic, ks_upper]
        "ks_exact": bool(np.isfinite(d_low) and d_up == d_low),
        "reference_rows": int(ref.ks_slots.sum()),
        "current_rows": int(cur_slots.sum()),
        "reference_missing": int(ref.ks_slots[-1]),
        "current_missing": int(cur_slots[-1]),
        "bins": {
            # interior edges of the finite values' bins (-inf, e0], (e0, e1], ..., (e_last, inf); then the -inf,
            # +inf and missing bins
            "edges": ref.psi_edges.tolist(),
            "labels": bin_labels(ref.psi_edges.tolist()),
            "reference": ref.psi_counts.tolist(),
            "current": cur_psi.tolist(),
        },
        "notes": notes,
    }


def categorical_feature(name: str, ref_counts: Dict, cur_counts: Dict, cfg: DriftConfig) -> Dict[str, Any]:
    keys = sorted(set(ref_counts) | set(cur_counts), key=lambda k: (k is None, str(k)))
    ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.int64)
    present = (ref + cur) > 0
    keys = [k for k, keep in zip(keys, present) if keep]
    ref, cur = ref[present], cur[present]
    stat, p_value, dof, cramers_v = chi2_homogeneity(ref, cur)
    psi_value = psi(ref, cur, cfg.psi_epsilon)
    order = np.argsort(-(ref + cur), kind="stable")[:MAX_CATEGORIES_IN_REPORT]
    notes = [] if np.isfinite(stat) else ["chi-squared undefined (statistic, p_value, effect_size null): no rows"]
    return {
        "name": name,
        "type": "categorical",
        "psi": psi_value,
        "test": "chi2",
        "statistic": _num(stat),
        "p_value": _num(p_value),
        "p_value_adjusted": None,
        "severity": severity(psi_value, p_value, cfg),
        "effect_size": _num(cramers_v),
        "effect_size_name": "cramers_v",
        "dof": dof,
        "reference_rows": int(ref.sum()),
        "current_rows": int(cur.sum()),
        "reference_missing": int(ref_counts.get(None, 0)),
        "current_missing": int(cur_counts.get(None, 0)),
        "categories": {
            "count": len(keys),
            "labels": [keys[i] for i in order],  # null = missing
            "reference": ref[order].tolist(),
            "current": cur[order].tolist(),
        },
        "notes": notes,
    }


def compare(reference: ReferenceSummary, current: dict, cfg: DriftConfig) -> List[Dict[str, Any]]:
    """One result per analysed feature, in the reference's column order, with BH-adjusted p-values."""

    numeric = [(n, r) for n, r in reference.numeric.items() if n not in current.get("skipped", {})]
    triples = []
    for name, ref in numeric:
        d_low, _ = ks_from_slots(ref.ks_slots, current["slots"][name])
        triples.append((d_low, int(ref.ks_slots[:-1].sum()), int(current["slots"][name][:-1].sum())))
    # the exact asymptotic p-value costs up to ~1 s per feature at millions of rows: spread over the CPUs
    p_values = execution.map_chunks(ks_pvalues, triples)
    features = [
        numeric_feature(name, ref, current["slots"][name], current["psi"][name], cfg, p_value=p)
        for (name, ref), p in zip(numeric, p_values)
    ] + [
        categorical_feature(name, counts, current["categories"][name], cfg)
        for name, counts in reference.categorical.items() if name not in current.get("skipped", {})
    ]
    adjusted = adjust_pvalues([np.nan if f["p_value"] is None else f["p_value"] for f in features])
    for feature, p_adj in zip(features, adjusted):
        feature["p_value_adjusted"] = _num(p_adj)
    if cfg.segment_columns:
        for feature in features:
            feature["attribution"] = attributions(feature, reference, current, cfg)
    return features


def _key(value: Optional[str]) -> tuple:
    return value is None, str(value)


def attributions(feature: Dict[str, Any], reference: ReferenceSummary, current: dict,
                 cfg: DriftConfig) -> List[Dict[str, Any]]:
    """The feature's `attribution` list (kon_ray.drift.attribution), one entry per segment column other than the
    feature itself, from the joint tables of both sides; a segment column the saved reference summary was fitted
    without gets an entry with `reason` and no numbers."""
    name = feature["name"]
    out: List[Dict[str, Any]] = []
    for by in cfg.segment_columns:
        if by == name:
            continue
        ref_rows = reference.joint.get(name, {}).get(by)
        cur_rows = current.get("joint", {}).get(name, {}).get(by)
        if ref_rows is None or cur_rows is None:
            out.append({"by": by, "reason": "the reference summary has no joint tables for this segment column:"
                                            " refit it with drift.segment_columns including it"})
            continue
        values = sorted(set(ref_rows) | set(cur_rows), key=_key)
        if feature["type"] == "numeric":
            labels: List[Any] = bin_labels(feature["bins"]["edges"])
            width = len(labels)
            zero = np.zeros(width, dtype=np.int64)
            n_ref = np.array([ref_rows.get(v, zero) for v in values], dtype=np.int64).reshape(len(values), width)
            n_cur = np.array([cur_rows.get(v, zero) for v in values], dtype=np.int64).reshape(len(values), width)
        else:
            labels = sorted({k for rows in (ref_rows, cur_rows) for counts in rows.values() for k in counts},
                            key=_key)
            n_ref = np.array([[ref_rows.get(v, {}).get(k, 0) for k in labels] for v in values], dtype=np.int64)
            n_cur = np.array([[cur_rows.get(v, {}).get(k, 0) for k in labels] for v in values], dtype=np.int64)
        out.append(attribute(by, values, labels, n_ref.reshape(len(values), len(labels)),
                             n_cur.reshape(len(values), len(labels)), cfg.psi_epsilon))
    return out


def skipped_columns(reference: ReferenceSummary, current: dict) -> List[Dict[str, str]]:
    """The report's `skipped`: every column not analysed (a type drift does not analyse, mixed kinds across files,
    or a current type the reference's kind cannot read), with the reason."""
    both = {**reference.skipped, **current.get("skipped", {})}
    return [{"name": name, "reason": reason} for name, reason in both.items()]


def summarise(features: List[Dict[str, Any]], cfg: DriftConfig, prediction: Dict[str, Any]) -> Dict[str, Any]:
    """The report's `summary`: counts per severity, the top drifted features, prediction drift, the flag."""
    drifted = [f for f in features if f["severity"] in DRIFTED]
    rank = sorted(drifted, key=lambda f: (-SEVERITIES.index(f["severity"]), -f["psi"], f["name"]))
    share = len(drifted) / len(features) if features else 0.0
    loose = [f["name"] for f in features if f["type"] == "numeric" and f["ks_upper"] is not None
             and f["ks_upper"] - f["statistic"] > cfg.ks_tolerance]
    flag = overall_flag(len(drifted), len(features), prediction.get("severity"), cfg)
    return {
        "features": len(features),
        "drifted": len(drifted),
        "drifted_share": share,
        "severity_counts": {s: sum(f["severity"] == s for f in features) for s in SEVERITIES},
        "top_drifted": [{"name": f["name"], "severity": f["severity"], "psi": f["psi"]} for f in rank[:TOP_DRIFTED]],
        "prediction_drift": prediction,
        "ks_bound_max": max((f["ks_upper"] - f["statistic"] for f in features
                             if f["type"] == "numeric" and f["ks_upper"] is not None), default=0.0),
        "ks_bound_exceeded": loose,
        "drift_flag": bool(flag),
        "thresholds": {"psi_moderate": cfg.psi_moderate, "psi_high": cfg.psi_high, "p_value": cfg.p_value,
                       "drift_share": cfg.drift_share},
    }
