"""Per-shard summaries (pure functions over one Arrow batch) and their exact merge.

A shard reduces to counts: for each numeric column, counts per KS slot on the reference edges (kon_ray.drift.ks)
and, once the PSI edges are known, per PSI bin; for each categorical column, counts per category and missing.
Counts add, so the merged summary - and every statistic - is the same for any number of shards or blocks.
Fitting the reference also collects the raw values of a few KS slots: those that hold the order statistics
numpy's quantile interpolates (psi.quantile_ranks), so the PSI edges are the exact `np.quantile` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kon_ray.drift.psi import edges_from_order_stats, quantile_ranks
from kon_ray.errors import DataError

MISSING = None  # the missing category's key in category counts


NUMERIC, CATEGORICAL, EMPTY = "numeric", "categorical", "null"  # EMPTY: an Arrow null column, no values at all


def type_kind(arrow_type: pa.DataType) -> Tuple[Optional[str], str]:
    """(kind, reason) for one file's Arrow type: NUMERIC, CATEGORICAL, EMPTY (takes the kind the other files
    give), or None with the reason drift does not analyse the type (README "Drift: the contract")."""
    t = arrow_type
    if pa.types.is_null(t):
        return EMPTY, ""
    if pa.types.is_dictionary(t):
        value_kind, reason = type_kind(t.value_type)
        return (CATEGORICAL, "") if value_kind is not None else (None, f"dictionary of {t.value_type}: {reason}")
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_boolean(t)):
        return CATEGORICAL, ""
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return NUMERIC, ""
    if pa.types.is_temporal(t):
        return None, "dates and times are not analysed (a later window differs by construction)"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) \
            or pa.types.is_binary_view(t):
        return None, "binary values are not analysed"
    if pa.types.is_nested(t):
        return None, "nested values (lists, structs, maps) are not analysed"
    return None, f"Arrow type {t} is not analysed"




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


def category_strings(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A column's values as category strings (so bool/int categories compare across files), null for missing.
    A float column forced categorical follows the contract too: NaN is missing (not a category "nan") and
    -0.0 is 0.0."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        column = pc.add(column, pa.scalar(0.0, column.type))  # -0.0 + 0.0 == +0.0 (IEEE), so both print "0"
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return column


def category_codes(column: pa.ChunkedArray | pa.Array) -> Tuple[np.ndarray, list]:
    """(codes, values): each row's category as an index into `values` (strings, then None for missing, last)."""
    encoded = pc.dictionary_encode(category_strings(column))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks else pa.array([], pa.dictionary(pa.int32(),
                                                                                                 pa.string()))
    values = encoded.dictionary.to_pylist() + [MISSING]
    codes = encoded.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, values


def category_counts(column: pa.ChunkedArray | pa.Array) -> Dict[Optional[str], int]:
    """Counts per category (`category_strings`) and MISSING for null."""
    column = category_strings(column)
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
    # segment columns (issue 30): each feature's joint counts [segment, PSI bin or category] per segment column,
    # for the features whose bins are known in this pass (categoricals; numerics with psi_edges)
    segments: Tuple[str, ...] = ()
    # column -> indices of the units that count it, when units also read columns they do not count (a segment
    # column that is a feature too is read by every unit but counted by its own); empty: a unit counts what it reads
    owner: Mapping[str, frozenset] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def restricted(self, columns: Sequence[str]) -> "BatchPlan":
        """The same plan for `columns` only (one column group of a per-column pass)."""
        keep = set(columns)
        return BatchPlan(numeric=tuple(c for c in self.numeric if c in keep),
                         categorical=tuple(c for c in self.categorical if c in keep),
                         ks_edges=self.ks_edges, psi_edges=self.psi_edges, collect=self.collect, count=self.count,
                         segments=self.segments)

    def owned(self, columns: Sequence[str], index: int) -> list[str]:
        """Of the columns unit `index` reads, the ones it counts (`owner`)."""
        return [c for c in columns if c not in self.owner or index in self.owner[c]]


def summarise_batch(table: pa.Table, plan: BatchPlan) -> dict:
    """One batch's summary: {"rows", "slots", "psi", "collected", "categories"}; see `merge`."""
    out: dict = {"rows": table.num_rows, "slots": {}, "psi": {}, "collected": {}, "categories": {}}
    segments = segment_codes(table, plan.segments)
    if segments:
        out["joint"] = {}
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
            out["psi"][name] = psi_counts_sorted(finite, plan.psi_edges[name], missing)
            if segments:
                out["joint"][name] = numeric_joint(values, plan.psi_edges[name], segments, name)
        wanted = plan.collect.get(name)
        if wanted is not None and len(wanted):
            parts = [(code, finite[bounds[code]:bounds[code + 1]]) for code in wanted]
            out["collected"][name] = (
                np.concatenate([np.full(len(v), code, dtype=np.int64) for code, v in parts]),
                np.concatenate([v for _, v in parts]),
            )
    for name in plan.categorical:
        out["categories"][name] = category_counts(table.column(name))
        if segments:
            out["joint"][name] = categorical_joint(table.column(name), segments, name)
    return out


def segment_codes(table: pa.Table, columns: Sequence[str]) -> Dict[str, Tuple[np.ndarray, list]]:
    """Per segment column, each row's segment (`category_codes`: values as category strings, missing last)."""
    return {c: category_codes(table.column(c)) for c in columns}


FEW_EDGES = 32  # psi_bin_codes compares against each edge up to this many (int8 codes), else binary search


def psi_bin_codes(values: np.ndarray, psi_edges: np.ndarray) -> np.ndarray:
    """Each value's PSI bin, laid out as `psi_counts_sorted`: the right-closed finite bins, then -inf, +inf,
    missing; np.bincount of the codes is `psi_counts_sorted`'s counts."""
    finite_bins = len(psi_edges) + 1
    if len(psi_edges) <= FEW_EDGES:
        # the count of edges below x, one comparison pass per edge: the same code as searchsorted's (first edge >= x),
        # 10-20x faster than a binary search per unsorted value for the default 9 edges (measured at 200k values)
        small = np.zeros(len(values), dtype=np.int8)
        for edge in psi_edges:  # numpy float64 scalars: compared in float64, as searchsorted does
            np.add(small, values > edge, out=small, casting="unsafe")
        codes = small.astype(np.intp)
    else:
        codes = np.searchsorted(psi_edges, values, side="left")  # first edge >= x: x in (e[i-1], e[i]]
    codes[values == -np.inf] = finite_bins
    codes[values == np.inf] = finite_bins + 1
    codes[np.isnan(values)] = finite_bins + 2
    return codes


def _joint_rows(seg: Tuple[np.ndarray, list], bin_codes: np.ndarray, bins: int) -> np.ndarray:
    codes, values = seg
    flat = codes * bins + bin_codes
    return np.bincount(flat, minlength=len(values) * bins).reshape(len(values), bins)


def numeric_joint(values: np.ndarray, psi_edges: np.ndarray, segments: Dict[str, Tuple[np.ndarray, list]],
                  feature: str = "") -> Dict[str, Dict[Optional[str], np.ndarray]]:
    """Per segment column: segment value -> the feature's PSI bin counts in that segment (the joint table's rows)."""
    bin_codes = psi_bin_codes(values, psi_edges)
    bins = len(psi_edges) + 4
    out = {}
    for column, seg in segments.items():
        table = _joint_rows(seg, bin_codes, bins)
        out[column] = {value: row for value, row in zip(seg[1], table) if row.any()}
    return out


def categorical_joint(column: pa.ChunkedArray | pa.Array, segments: Dict[str, Tuple[np.ndarray, list]],
                      feature: str = "") -> Dict[str, Dict[Optional[str], Dict[Optional[str], int]]]:
    """Per segment column: segment value -> the feature's category counts in that segment (missing: None)."""
    cat_codes, categories = category_codes(column)
    out: Dict[str, Dict[Optional[str], Dict[Optional[str], int]]] = {}
    for name, seg in segments.items():
        table = _joint_rows(seg, cat_codes, len(categories))
        out[name] = {value: {categories[j]: int(row[j]) for j in np.flatnonzero(row)}
                     for value, row in zip(seg[1], table) if row.any()}
    return out


def merge_joint(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    """Joint tables of two summaries together: {feature: {segment column: {segment: counts}}}; numeric counts are
    arrays (one length per feature), categorical ones dicts; both add."""
    if not a:
        return b
    if not b:
        return a
    out = {name: {col: dict(rows) for col, rows in by.items()} for name, by in a.items()}
    for name, by in b.items():
        for col, rows in by.items():
            mine = out.setdefault(name, {}).setdefault(col, {})
            for value, counts in rows.items():
                if value not in mine:
                    mine[value] = counts
                elif isinstance(counts, dict):
                    merged = dict(mine[value])
                    for k, n in counts.items():
                        merged[k] = merged.get(k, 0) + n
                    mine[value] = merged
                else:
                    mine[value] = mine[value] + counts
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
    joint = merge_joint(a.get("joint"), b.get("joint"))
    if joint is not None:
        out["joint"] = joint
    return out


def sample_edges(sample: np.ndarray, bins: int) -> np.ndarray:
    """KS edges from sampled reference values: -inf, then every distinct finite value when there are at most `bins`
    of them (then KS is exact), else the sample's order statistics at j/bins (actual values, so heavy ties become
    edges), then +inf. The two infinite edges are always there, so the slots count -inf and +inf exactly (the
    PSI quantiles are taken over the finite values between them) whether or not the sample met an infinity."""
    values = sample[np.isfinite(sample)]
    if len(values) > 1 and not np.all(values[1:] >= values[:-1]):  # a sorted sample (the engine's) is not resorted
        values = np.sort(values)
    distinct = _distinct_sorted(values)
    if len(distinct) > bins:
        positions = np.round(np.linspace(0, len(values) - 1, bins + 1)).astype(np.int64)
        distinct = _distinct_sorted(values[positions])
    return np.concatenate(([-np.inf], distinct, [np.inf]))


def infinite_counts(slots: np.ndarray) -> Tuple[int, int]:
    """(-inf count, +inf count) from slot counts on `sample_edges` edges: the slots of the first and last edge."""
    return int(slots[1]), int(slots[-3])


def psi_ranks(slots: np.ndarray, bins: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(lo, hi, gamma, n_finite): the ranks among all non-missing values (so -inf values come first) of the order
    statistics np.quantile(finite values, i/B) interpolates; the quantiles are over the finite values only."""

    low_inf, high_inf = infinite_counts(slots)
    n_finite = int(slots[:-1].sum()) - low_inf - high_inf
    lo, hi, gamma = quantile_ranks(max(n_finite, 1), bins)
    return lo + low_inf, hi + low_inf, gamma, n_finite


def psi_counts_sorted(sorted_values: np.ndarray, psi_edges: np.ndarray, missing: int) -> np.ndarray:
    """PSI counts of sorted non-missing values: the finite values in the right-closed bins of `psi_edges` (outer
    bins open, as pandas.cut), then -inf, +inf and missing, each its own bin."""
    low_inf = int(np.searchsorted(sorted_values, -np.inf, side="right"))
    finite_end = int(np.searchsorted(sorted_values, np.inf, side="left"))
    at_most = np.searchsorted(sorted_values, psi_edges, side="right")  # right-closed, as pandas.cut
    counts = np.diff(np.concatenate(([low_inf], at_most, [finite_end])))
    return np.concatenate((counts, [low_inf, len(sorted_values) - finite_end, missing])).astype(np.int64)


def psi_edges_sorted(sorted_values: np.ndarray, bins: int) -> np.ndarray:
    """The exact PSI edges np.unique(np.quantile(finite values, i/B)) of sorted non-missing values; empty when
    there is no finite value."""

    finite = sorted_values[np.isfinite(sorted_values)]
    if not len(finite):
        return np.empty(0)
    lo, hi, gamma = quantile_ranks(len(finite), bins)
    return edges_from_order_stats(finite[lo], finite[hi], gamma)


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
    """Reference counts per PSI bin, laid out as `psi_counts_sorted`: finite bins, -inf, +inf, missing."""
    low_inf, high_inf = infinite_counts(slots)
    finite_end = int(slots[:-1].sum()) - high_inf
    at_most = [count_at_most(slots, edges, collected, q) for q in psi_edges]
    counts = np.diff(np.array([low_inf, *at_most, finite_end], dtype=np.int64))
    return np.concatenate((counts, [low_inf, high_inf, slots[-1]])).astype(np.int64)


def empty_collected() -> Tuple[np.ndarray, np.ndarray]:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)


def needed_slots(slots: np.ndarray, ranks: Sequence[int] | np.ndarray) -> np.ndarray:
    """The inside slots (even codes) that hold any of `ranks`: their values must be collected."""
    codes = slots_holding_ranks(slots, np.asarray(ranks, dtype=np.int64))
    return np.unique(codes[codes % 2 == 0])


def _order(key: Optional[str]) -> Tuple[bool, str]:
    return key is MISSING, str(key)


def sorted_joint(joint: dict, columns: Sequence[str]) -> Dict[str, Dict[str, Dict[Optional[str], Any]]]:
    """Joint tables in one fixed order (features as `columns`, segments and categories by value, missing last), so
    a saved summary is the same whatever order the units merged in."""
    out: Dict[str, Dict[str, Dict[Optional[str], Any]]] = {}
    for name in columns:
        if name not in joint:
            continue
        out[name] = {}
        for col, rows in joint[name].items():
            out[name][col] = {value: (dict(sorted(counts.items(), key=lambda kv: _order(kv[0])))
                                      if isinstance(counts, dict) else np.asarray(counts, dtype=np.int64))
                              for value, counts in sorted(rows.items(), key=lambda kv: _order(kv[0]))}
    return out
