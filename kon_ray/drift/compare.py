"""From the merged reference and current counts to one result per feature and the run's summary (pure).

Each feature gets every statistic of the registry (kon_ray/drift/statistics.py) that applies to its kind: PSI, its
test (KS for numeric, chi-squared for categorical) with the raw and Benjamini-Hochberg adjusted p-values and an
effect size (numeric: the KS statistic D itself, the largest gap between the two CDFs; categorical: Cramer's V),
any measure, and a severity (kon_ray.drift.severity).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from kon_ray import execution
from kon_ray.drift import statistics
from kon_ray.drift.attribution import attribute
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.reference import NumericReference, ReferenceSummary
from kon_ray.drift.report import bin_labels
from kon_ray.drift.severity import DRIFTED, SEVERITIES, adjust_pvalues, overall_flag, severity
from kon_ray.drift.statistics import TEST, Counts, Measure, number
from kon_ray.drift.summary import CATEGORICAL, NUMERIC

MAX_CATEGORIES_IN_REPORT = 50  # the statistics use every category; the JSON lists the largest ones
TOP_DRIFTED = 10


def numeric_counts(ref: NumericReference, cur_slots: np.ndarray, cur_psi: np.ndarray) -> Counts:
    return Counts(NUMERIC, ref.psi_counts, cur_psi, ref.ks_slots, cur_slots)


def categorical_counts(ref_counts: Mapping, cur_counts: Mapping) -> Tuple[List[Any], Counts]:
    """(categories, counts) over the union of both sides' categories, missing (None) last; a category absent on
    both sides is left out (chi-squared refuses a zero expected count)."""
    keys = sorted(set(ref_counts) | set(cur_counts), key=lambda k: (k is None, str(k)))
    ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.int64)
    present = (ref + cur) > 0
    return [k for k, keep in zip(keys, present) if keep], Counts(CATEGORICAL, ref[present], cur[present])


def measure(counts: Sequence[Counts], cfg: DriftConfig) -> List[Dict[str, Measure]]:
    """Each feature's statistics by name, in registry order; a costly statistic (`spread`) over the CPUs."""
    out: List[Dict[str, Measure]] = [{} for _ in counts]
    for statistic in statistics.STATISTICS:
        mine = [i for i, c in enumerate(counts) if c.kind in statistic.kinds]
        each = partial(statistics.measure_each, statistic, cfg)
        chunk = [counts[i] for i in mine]
        for i, result in zip(mine, execution.map_chunks(each, chunk) if statistic.spread else each(chunk)):
            out[i][statistic.name] = result
    return out


def statistic_fields(kind: str, measures: Mapping[str, Measure], cfg: DriftConfig) -> Dict[str, Any]:
    """A feature's statistics as report keys, in registry order: the band and each measure as `<name>: value`,
    the test as `test`, `statistic`, `p_value`, `p_value_adjusted` (compare fills it in), `severity`,
    `effect_size`, `effect_size_name` and its own keys."""
    test = statistics.kind_test(kind)
    grade = severity(measures[statistics.band_statistic().name].value, measures[test.name].p_value, cfg, kind)
    out: Dict[str, Any] = {}
    for statistic in statistics.applying(kind):
        m = measures[statistic.name]
        if statistic.role != TEST:
            out[statistic.name] = m.value
            continue
        out.update({"test": statistic.name, "statistic": number(m.value), "p_value": number(m.p_value),
                    "p_value_adjusted": None, "severity": grade, "effect_size": number(m.effect_size),
                    "effect_size_name": statistic.effect_size_name, **m.fields})
    return out


def numeric_feature(name: str, ref: NumericReference, cur_slots: np.ndarray, cur_psi: np.ndarray,
                    cfg: DriftConfig, measures: Optional[Mapping[str, Measure]] = None) -> Dict[str, Any]:
    """`measures`: the feature's statistics when the caller computed them already (compare() does, for all
    features at once)."""
    if measures is None:
        measures = measure([numeric_counts(ref, cur_slots, cur_psi)], cfg)[0]
    return {
        "name": name,
        "type": NUMERIC,
        **statistic_fields(NUMERIC, measures, cfg),
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
        "notes": [m.note for m in measures.values() if m.note],
    }


def categorical_feature(name: str, ref_counts: Dict, cur_counts: Dict, cfg: DriftConfig,
                        measures: Optional[Mapping[str, Measure]] = None) -> Dict[str, Any]:
    """`measures`: as for numeric_feature."""
    keys, counts = categorical_counts(ref_counts, cur_counts)
    if measures is None:
        measures = measure([counts], cfg)[0]
    ref, cur = counts.reference, counts.current
    order = np.argsort(-(ref + cur), kind="stable")[:MAX_CATEGORIES_IN_REPORT]
    return {
        "name": name,
        "type": CATEGORICAL,
        **statistic_fields(CATEGORICAL, measures, cfg),
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
        "notes": [m.note for m in measures.values() if m.note],
    }


def compare(reference: ReferenceSummary, current: dict, cfg: DriftConfig) -> List[Dict[str, Any]]:
    """One result per analysed feature, in the reference's column order, with BH-adjusted p-values."""
    skipped = current.get("skipped", {})
    numeric = [(n, r) for n, r in reference.numeric.items() if n not in skipped]
    categorical = [(n, c) for n, c in reference.categorical.items() if n not in skipped]
    measures = measure([numeric_counts(ref, current["slots"][name], current["psi"][name]) for name, ref in numeric]
                       + [categorical_counts(counts, current["categories"][name])[1] for name, counts in categorical],
                       cfg)
    features = [
        numeric_feature(name, ref, current["slots"][name], current["psi"][name], cfg, m)
        for (name, ref), m in zip(numeric, measures)
    ] + [
        categorical_feature(name, counts, current["categories"][name], cfg, m)
        for (name, counts), m in zip(categorical, measures[len(numeric):])
    ]
    adjusted = adjust_pvalues([np.nan if f["p_value"] is None else f["p_value"] for f in features])
    for feature, p_adj in zip(features, adjusted):
        feature["p_value_adjusted"] = number(p_adj)
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
    """The report's `summary`: counts per severity, the top drifted features, prediction drift, each statistic's
    own entries (KS: its bound), the flag, and the thresholds the statistics were graded with."""
    drifted = [f for f in features if f["severity"] in DRIFTED]
    rank = sorted(drifted, key=lambda f: (-SEVERITIES.index(f["severity"]), -f["psi"], f["name"]))
    share = len(drifted) / len(features) if features else 0.0
    flag = overall_flag(len(drifted), len(features), prediction.get("severity"), cfg)
    out = {
        "features": len(features),
        "drifted": len(drifted),
        "drifted_share": share,
        "severity_counts": {s: sum(f["severity"] == s for f in features) for s in SEVERITIES},
        "top_drifted": [{"name": f["name"], "severity": f["severity"], "psi": f["psi"]} for f in rank[:TOP_DRIFTED]],
        "prediction_drift": prediction,
    }
    for statistic in statistics.STATISTICS:
        out.update(statistic.summary([f for f in features if f["type"] in statistic.kinds], cfg))
    out["drift_flag"] = bool(flag)
    out["thresholds"] = {**{key: value for statistic in statistics.STATISTICS
                            for key, value in statistic.limits(cfg).items()}, "drift_share": cfg.drift_share}
    return out
