"""Per-shard summaries (pure functions over one Arrow batch) and their exact merge.

A shard reduces to counts: for each numeric column, counts per KS slot on the reference edges (kon_ray.drift.ks)
and, once the PSI edges are known, per PSI bin; for each categorical column, counts per category and missing.
Counts add, so the merged summary - and every statistic - is the same for any number of shards or blocks.
Fitting the reference also collects the raw values of a few KS slots: those that hold the order statistics
numpy's quantile interpolates (psi.quantile_ranks), so the PSI edges are the exact `np.quantile` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kon_ray.errors import DataError

MISSING = None  # the missing category's key in category counts


def column_kind(arrow_type: pa.DataType) -> Optional[str]:
    """numeric | categorical | None (a type drift does not analyse, e.g. dates)."""
    if pa.types.is_dictionary(arrow_type):
        return "categorical"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_boolean(arrow_type):
        return "categorical"
    if pa.types.is_null(arrow_type):  # a column with no values at all (pandas all-NaN): numeric, all missing
        return "numeric"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    return None


def numeric_values(column: pa.ChunkedArray | pa.Array, name: str = "") -> np.ndarray:
    """A column as float64 with NaN for null (null and NaN are both missing)."""
    try:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not pa.types.is_floating(column.type):
            column = pc.cast(column, pa.float64())
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise DataError(f"column {name!r}: cannot be read as numeric ({str(exc).splitlines()[0]})") from None


def category_counts(column: pa.ChunkedArray | pa.Array) -> Dict[Optional[str], int]:
    """Counts per category (as strings, so bool/int categories compare across files) and MISSING for null."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    counts: Dict[Optional[str], int] = {}
    for item in pc.value_counts(column).to_pylist():
        counts[item["values"]] = counts.get(item["values"], 0) + int(item["counts"])  # null -> None (MISSING)
    return counts


@dataclass(frozen=True)
class BatchPlan:
    """What one pass counts; plain numpy and tuples, so it ships to Ray workers as it is."""

    numeric: Tuple[str, ...] = ()
    categorical: Tuple[str, ...] = ()
    ks_edges: Mapping[str, np.ndarray] = field(default_factory=dict)
    psi_edges: Mapping[str, np.ndarray] = field(default_factory=dict)  # current pass only
    collect: Mapping[str, np.ndarray] = field(default_factory=dict)  # slot codes whose values to keep
    count: bool = True  # False: collect values only (the reference's second pass)

    @property
    def columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def restricted(self, columns: Sequence[str]) -> "BatchPlan":
        """The same plan for `columns` only (one column group of a per-column pass)."""
        keep = set(columns)
        return BatchPlan(numeric=tuple(c for c in self.numeric if c in keep),
                         categorical=tuple(c for c in self.categorical if c in keep),
                         ks_edges=self.ks_edges, psi_edges=self.psi_edges, collect=self.collect, count=self.count)


def summarise_batch(table: pa.Table, plan: BatchPlan) -> dict:
    """One batch's summary: {"rows", "slots", "psi", "collected", "categories"}; see `merge`."""
    out: dict = {"rows": table.num_rows, "slots": {}, "psi": {}, "collected": {}, "categories": {}}
    for name in plan.numeric:
        values = numeric_values(table.column(name), name)
        # Sorting the batch's values once and searching the few edges in them is as cheap as np.histogram
        # (which sorts too) and much cheaper than searching every value among thousands of edges.
        finite = values[~np.isnan(values)]  # a new array: sorted in place
        finite.sort()
        missing = len(values) - len(finite)
        edges = plan.ks_edges[name]
        bounds = sorted_slot_bounds(finite, edges)
        if plan.count:
            out["slots"][name] = np.append(np.diff(bounds), missing).astype(np.int64)
        if name in plan.psi_edges:
            at_most = np.searchsorted(finite, plan.psi_edges[name], side="right")  # right-closed, as pandas.cut
            counts = np.diff(np.concatenate(([0], at_most, [len(finite)])))
            out["psi"][name] = np.append(counts, missing).astype(np.int64)
        wanted = plan.collect.get(name)
        if wanted is not None and len(wanted):
            parts = [(code, finite[bounds[code]:bounds[code + 1]]) for code in wanted]
            out["collected"][name] = (
                np.concatenate([np.full(len(v), code, dtype=np.int64) for code, v in parts]),
                np.concatenate([v for _, v in parts]),
            )
    for name in plan.categorical:
        out["categories"][name] = category_counts(table.column(name))
    return out


def sorted_slot_bounds(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Where each KS slot (kon_ray.drift.ks) starts and ends in sorted non-missing values: slot j holds
    sorted_values[bounds[j]:bounds[j + 1]]; the same counts as np.bincount(ks.slot_codes(values, edges))."""
    below = np.searchsorted(sorted_values, edges, side="left")  # values < e_k
    through = np.searchsorted(sorted_values, edges, side="right")  # values <= e_k
    inner = np.empty(2 * len(edges), dtype=np.int64)
    inner[0::2], inner[1::2] = below, through
    return np.concatenate(([0], inner, [len(sorted_values)]))


def merge(a: Optional[dict], b: dict) -> dict:
    """Merge two summaries (exact: counts add, collected values concatenate)."""
    if a is None:
        return b
    out = {"rows": a["rows"] + b["rows"], "slots": dict(a["slots"]), "psi": dict(a["psi"]), "collected": {},
           "categories": {}}
    for key in ("slots", "psi"):
        for name, counts in b[key].items():
            out[key][name] = out[key][name] + counts if name in out[key] else counts
    for name in set(a["collected"]) | set(b["collected"]):
        parts = [s["collected"][name] for s in (a, b) if name in s["collected"]]
        out["collected"][name] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    for name in set(a["categories"]) | set(b["categories"]):
        merged = dict(a["categories"].get(name, {}))
        for key, count in b["categories"].get(name, {}).items():
            merged[key] = merged.get(key, 0) + count
        out["categories"][name] = merged
    return out


def sample_edges(sample: np.ndarray, bins: int) -> np.ndarray:
    """KS edges from sampled reference values: every distinct value when there are at most `bins` of them (then
    KS is exact), else the sample's order statistics at j/bins (actual values, so heavy ties become edges)."""
    values = sample[~np.isnan(sample)]
    if len(values) > 1 and not np.all(values[1:] >= values[:-1]):  # a sorted sample (the engine's) is not resorted
        values = np.sort(values)
    distinct = _distinct_sorted(values)
    if len(distinct) <= bins:
        return distinct
    positions = np.round(np.linspace(0, len(values) - 1, bins + 1)).astype(np.int64)
    return _distinct_sorted(values[positions])


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    """np.unique of sorted values, without sorting them again."""
    if len(values) < 2:
        return values.copy()
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def slots_holding_ranks(slots: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The slot code holding each 0-based rank among the non-missing values."""
    cum = np.cumsum(slots[:-1])
    return np.searchsorted(cum, ranks, side="right")


def order_statistics(
    slots: np.ndarray, edges: np.ndarray, collected: Tuple[np.ndarray, np.ndarray], ranks: np.ndarray
) -> np.ndarray:
    """Exact order statistics at `ranks`: an edge slot holds one value (the edge); an inside slot's value is
    selected from the values collected for it."""
    codes, values = collected
    cum = np.cumsum(slots[:-1])
    out = np.empty(len(ranks), dtype=np.float64)
    for i, (rank, code) in enumerate(zip(ranks, slots_holding_ranks(slots, ranks))):
        if code % 2 == 1:
            out[i] = edges[code // 2]
            continue
        inside = np.sort(values[codes == code])
        before = cum[code - 1] if code else 0
        if len(inside) != slots[code]:
            raise RuntimeError(f"slot {code}: collected {len(inside)} values, counted {slots[code]}")
        out[i] = inside[rank - before]
    return out


def count_at_most(
    slots: np.ndarray, edges: np.ndarray, collected: Tuple[np.ndarray, np.ndarray], q: float
) -> int:
    """How many non-missing values are <= q. When q lies strictly inside a non-empty slot, that slot also holds
    one of the order statistics q was interpolated from, so its values were collected."""
    cum = np.concatenate(([0], np.cumsum(slots[:-1])))
    idx = int(np.searchsorted(edges, q, side="left"))
    if idx < len(edges) and edges[idx] == q:
        return int(cum[2 * idx + 2])  # through the edge's own slot
    code = 2 * idx
    if slots[code] == 0:
        return int(cum[code])
    codes, values = collected
    inside = values[codes == code]
    if len(inside) != slots[code]:
        raise RuntimeError(f"slot {code}: values not collected")
    return int(cum[code] + np.count_nonzero(inside <= q))


def psi_counts_from_slots(
    slots: np.ndarray, edges: np.ndarray, collected: Tuple[np.ndarray, np.ndarray], psi_edges: np.ndarray
) -> np.ndarray:
    """Reference counts per PSI bin (right-closed, outer bins open) plus the missing bin."""
    n = int(slots[:-1].sum())
    at_most = np.array([count_at_most(slots, edges, collected, q) for q in psi_edges] + [n], dtype=np.int64)
    counts = np.diff(np.concatenate(([0], at_most)))
    return np.append(counts, slots[-1]).astype(np.int64)


def empty_collected() -> Tuple[np.ndarray, np.ndarray]:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)


def needed_slots(slots: np.ndarray, ranks: Sequence[int]) -> np.ndarray:
    """The inside slots (even codes) that hold any of `ranks`: their values must be collected."""
    codes = slots_holding_ranks(slots, np.asarray(ranks, dtype=np.int64))
    return np.unique(codes[codes % 2 == 0])
