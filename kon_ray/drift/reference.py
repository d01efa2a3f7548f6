"""The reference, fitted once: everything a later check needs, saved as `reference_summary.json`.

Per numeric column the KS edges and slot counts, the PSI edges (exact reference quantiles) and PSI bin counts;
per categorical column the category counts. A check against a new batch reads this instead of the reference data
and gives the same numbers (`reference_summary=PATH` on the standalone command).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from kon_ray import storage
from kon_ray.errors import ConfigError, DataError

FORMAT = "kon_ray.drift.reference/2"  # /2: -inf/+inf KS edges and PSI bins, skipped columns


@dataclass(frozen=True)
class NumericReference:
    ks_edges: np.ndarray  # -inf, sorted finite reference values, +inf (summary.sample_edges)
    ks_slots: np.ndarray  # counts per KS slot (kon_ray.drift.ks), last = missing
    psi_edges: np.ndarray  # interior PSI edges: exact np.quantile(finite ref values, i/B), duplicates removed
    psi_counts: np.ndarray  # finite values per right-closed PSI bin (len(psi_edges) + 1), then -inf, +inf, missing


@dataclass(frozen=True)
class ReferenceSummary:
    rows: int
    psi_bins: int
    numeric: Dict[str, NumericReference] = field(default_factory=dict)
    categorical: Dict[str, Dict[Optional[str], int]] = field(default_factory=dict)  # None = missing
    source: str = ""
    skipped: Dict[str, str] = field(default_factory=dict)  # column -> why it is not analysed
    # issue 30: feature -> segment column -> segment value (None = missing) -> the feature's counts in the
    # segment: PSI bin counts (numeric, laid out as psi_counts) or category -> count (categorical)
    joint: Dict[str, Dict[str, Dict[Optional[str], Any]]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "source": self.source,
            "rows": self.rows,
            "psi_bins": self.psi_bins,
            "numeric": {
                name: {
                    "ks_edges": ref.ks_edges[1:-1].tolist(),  # strict JSON: the -inf and +inf ends are implied
                    "ks_slots": ref.ks_slots.tolist(),
                    "psi_edges": ref.psi_edges.tolist(),
                    "psi_counts": ref.psi_counts.tolist(),
                }
                for name, ref in self.numeric.items()
            },
            "categorical": {name: [[k, v] for k, v in counts.items()] for name, counts in self.categorical.items()},
            "skipped": dict(self.skipped),
            "joint": {name: {col: [[value, counts.tolist() if isinstance(counts, np.ndarray) else
                                    [[k, v] for k, v in counts.items()]] for value, counts in rows.items()]
                             for col, rows in by.items()} for name, by in self.joint.items()},
        }

    @classmethod
    def from_json(cls, obj: dict, path: str = "reference summary") -> "ReferenceSummary":
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise DataError(f"{path}: not a kon_ray drift reference summary (expected format {FORMAT})")
        numeric = {
            name: NumericReference(
                ks_edges=np.concatenate(([-np.inf], np.asarray(ref["ks_edges"], dtype=np.float64), [np.inf])),
                ks_slots=np.asarray(ref["ks_slots"], dtype=np.int64),
                psi_edges=np.asarray(ref["psi_edges"], dtype=np.float64),
                psi_counts=np.asarray(ref["psi_counts"], dtype=np.int64),
            )
            for name, ref in obj["numeric"].items()
        }
        categorical = {name: {k: int(v) for k, v in pairs} for name, pairs in obj["categorical"].items()}
        joint = {name: {col: {value: (np.asarray(counts, dtype=np.int64) if name in numeric else
                                      {k: int(v) for k, v in counts}) for value, counts in rows}
                        for col, rows in by.items()} for name, by in (obj.get("joint") or {}).items()}
        return cls(rows=int(obj["rows"]), psi_bins=int(obj["psi_bins"]), numeric=numeric,
                   categorical=categorical, source=obj.get("source", ""), skipped=dict(obj.get("skipped") or {}),
                   joint=joint)


def save(summary: ReferenceSummary, path: str) -> None:
    # Compact: the KS counts make this a few MB at 240 features; Python's float repr round-trips exactly.
    # allow_nan=False: strict JSON (every stored number is finite; the infinite KS edges are implied)
    storage.write_text(path, json.dumps(summary.to_json(), separators=(",", ":"), allow_nan=False) + "\n")


def load(path: str, psi_bins: Optional[int] = None) -> ReferenceSummary:
    if not storage.exists(path):
        raise DataError(f"{path}: no such reference summary (reference_summary=)")
    try:
        obj = json.loads(storage.read_text(path))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    summary = ReferenceSummary.from_json(obj, path)
    if psi_bins is not None and summary.psi_bins != psi_bins:
        raise ConfigError(
            f"{path} was fitted with drift.psi_bins={summary.psi_bins}, but drift.psi_bins={psi_bins}:"
            f" refit the reference or set drift.psi_bins={summary.psi_bins}"
        )
    return summary
