"""Where drift meets Ray: plan the passes over the data, run the pure per-unit summaries, merge them.

Reference, in one read (files whose columns each fit one unit, execution.plan_whole_columns; an in-memory table):
  every unit holds all rows of its column group and does everything (`fit_unit`): the sample that places the KS
  edges (every k-th row by position in the whole input), slot counts on those edges, the exact PSI quantiles
  from the values of the slots that hold them, category counts.
Reference, in passes (a column too big for one unit; a Ray Dataset):
  1. the sample: every k-th row by position (files), or a row-hash sample of a Ray Dataset, whose row order is not
     fixed. It spans the whole reference and, for files and tables, is the same on any layout. It never enters a
     statistic.
  2. every unit counts KS slots and categories, and keeps the values of the few KS slots that the sample says
     hold the quantiles PSI needs (kon_ray.drift.summary).
  3. only if a needed slot was not kept: one more pass over those numeric columns for those slots.
  Both ways give the same numbers, bit for bit (the same sample, the same counts, the same order statistics).
Current: one pass; every unit counts KS slots, PSI bins and categories on the reference's edges.
Parquet files run through the execution layer (kon_ray.execution): work units from the footers, split by column
groups when a file has too few row groups, as plain Ray tasks (in this process when Ray is not running); a pandas
DataFrame runs the same per-unit functions in this process (one unit); a Ray Dataset (scored predictions) runs
them per block with map_batches, materialised once. Each unit returns one small summary; summaries merge exactly
(counts add, rows are counted by one column group), so no result depends on the layout or the number of units.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from kon_ray import execution, storage
from kon_ray.drift import summary as S
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.psi import edges_from_order_stats
from kon_ray.drift.reference import NumericReference, ReferenceSummary
from kon_ray.errors import ConfigError, DataError
from kon_ray.storage import find_files, read_metadata

if TYPE_CHECKING:  # pandas is imported where a DataFrame is handled: Ray workers run the per-unit
    import pandas as pd  # functions below without it (about 0.5 CPU-s less per fresh worker)

    from kon_ray.drift.segments import SegmentRules  # pandas too: only the pipeline's runs ship one to workers

log = logging.getLogger(__name__)

SPECULATIVE_NEIGHBOURS = 2  # KS slots kept on each side of the sample's guess for a PSI quantile
IN_MEMORY = "<in memory>"  # the file name of an in-memory table's one row range


@dataclass(frozen=True)
class Source:
    """Data to summarise: Parquet files (local or s3://), an in-memory Arrow table, or a Ray Dataset."""

    label: str
    files: Optional[Tuple[str, ...]] = None
    dataset: Any = None  # ray.data.Dataset
    table: Optional[pa.Table] = None  # a pandas DataFrame, as Arrow
    groups: Optional[tuple] = None  # the files' row groups (execution.row_groups), read once

    def schemas(self) -> List[tuple]:
        """(file, Arrow schema) of every file (footers only), or of the table / dataset: a column's kind is decided
        from all of them, never from the first file alone."""
        if self.files:

            return [(f, read_metadata(f)[0]) for f in self.files]
        if self.table is not None:
            return [(self.label, self.table.schema)]
        try:
            return [(self.label, execution.dataset_schema(self.dataset))]
        except ValueError:
            raise DataError(f"{self.label}: the dataset is empty") from None

    def schema(self) -> pa.Schema:
        """The column names in first-seen order (types from the first file that has each column)."""
        fields: Dict[str, pa.Field] = {}
        for _, schema in self.schemas():
            for f in schema:
                fields.setdefault(f.name, f)
        return pa.schema(list(fields.values()))

    def rows(self) -> int:
        if self.files:
            return sum(g.rows for g in self.row_groups())
        if self.table is not None:
            return self.table.num_rows
        return execution.dataset_rows(self.dataset)

    def row_groups(self) -> List[execution.RowGroupInfo]:
        return list(self.groups) if self.groups is not None else execution.row_groups(self.files or ())

    def only(self, columns: Sequence[str]) -> "Source":
        """A Ray Dataset reduced to `columns` and materialised once: the passes then do not re-run its
        pipeline (e.g. a model's scoring) each time. Files and tables are returned as they are."""
        if self.dataset is None:
            return self
        return dataclasses.replace(self, dataset=execution.dataset_columns(self.dataset, columns, materialized=True))


def as_source(data: Union[str, Sequence[str], "pd.DataFrame", object], label: str = "") -> Source:
    """A path (file or folder of Parquet parts), several paths, a pandas DataFrame or a Ray Dataset."""
    if isinstance(data, Source):
        return data
    if isinstance(data, str):

        files = tuple(find_files(data))
        return Source(label=label or data, files=files, groups=tuple(execution.row_groups(files)))
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, str) for p in data):

        # An empty split (e.g. no test rows) is still a folder; only all of them empty is an error.
        files = tuple(f for path in data if storage.list_files(path) for f in find_files(path))
        if not files:
            find_files(data[0])  # raises the DataError naming the path
        return Source(label=label or ", ".join(data), files=files, groups=tuple(execution.row_groups(files)))
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        if data.empty:
            raise DataError(f"{label or 'data frame'}: no rows")
        return Source(label=label or "data frame", table=pa.Table.from_pandas(data, preserve_index=False))
    if isinstance(data, pa.Table):
        if data.num_rows == 0:
            raise DataError(f"{label or 'table'}: no rows")
        return Source(label=label or "table", table=data)
    if execution.is_dataset(data):
        return Source(label=label or "dataset", dataset=data)
    raise ConfigError(f"drift input {label!r}: expected a path, a pandas DataFrame or a Ray Dataset")


def _whole_table(table: pa.Table) -> execution.WorkUnit:
    """An in-memory table as one work unit (rows 0..n, position 0): the same per-unit functions as files."""
    return execution.WorkUnit(0, (execution.RowRange(IN_MEMORY, 0, 0, table.num_rows, table.num_rows, 0),))


def _map_reduce(source: Source, fn, columns: Sequence[str], merge, kwargs: dict):
    """`fn(table, unit, **kwargs)` over every unit of `source` (files or an in-memory table), merged."""
    if source.table is not None:
        return fn(source.table.select(list(columns)), _whole_table(source.table), **kwargs)
    units = _plan_units(source, columns)
    return execution.map_reduce(fn, units, merge, columns=list(columns), kwargs=kwargs)


def _type_groups(source: Source, columns: Sequence[str]) -> List[List[str]]:
    """The files grouped by their Arrow types of `columns`: a unit never mixes files whose types Arrow cannot
    concatenate (string and string_view, a dictionary and plain strings); one group in the usual case."""
    groups: Dict[tuple, List[str]] = {}
    for file, schema in source.schemas():
        key = tuple(str(schema.field(c).type) if c in schema.names else "" for c in columns)
        groups.setdefault(key, []).append(file)
    return list(groups.values())


def _plan_units(source: Source, columns: Sequence[str]) -> List[execution.WorkUnit]:
    """Per-column work units; with files of several type signatures, planned per signature, and every row range
    given its position in the whole input (so the every-k-th-row sample is the same as on a uniform layout)."""
    row_groups = source.row_groups()
    by_type = _type_groups(source, columns)
    if len(by_type) == 1:
        return execution.plan(source.files or (), list(columns), per_column=True, groups=row_groups)
    offsets: Dict[str, int] = {}
    position = 0
    for g in row_groups:  # the first row of every file in the whole input
        offsets.setdefault(g.file, position)
        position += g.rows
    units: List[execution.WorkUnit] = []
    for files in by_type:
        chosen = set(files)
        subset = [g for g in row_groups if g.file in chosen]
        local: Dict[str, int] = {}
        position = 0
        for g in subset:
            local.setdefault(g.file, position)
            position += g.rows
        for unit in execution.plan(files, list(columns), per_column=True, groups=subset):
            ranges = tuple(dataclasses.replace(r, first_row=offsets[r.file] + r.first_row - local[r.file])
                           for r in unit.ranges)
            units.append(dataclasses.replace(unit, index=len(units), ranges=ranges))
    return units


# --- the per-unit summaries (pure) --------------------------------------------------------------------------


def summarise_unit(table: pa.Table, unit: execution.WorkUnit, plan: S.BatchPlan,
                   derive: Optional["SegmentRules"] = None) -> dict:
    """One unit's summary: `plan` on the unit's columns (with the segment columns `derive` makes from them). Units
    of one column group together hold every row once; the rows are counted by the column group that holds the
    plan's first column, so that merging every column group counts each row once."""
    if plan.segments:
        table = derived(table, derive)
    if unit.columns is None:
        return S.summarise_batch(table, plan)
    owned = plan.owned(unit.columns, unit.index)  # not the segment columns it reads for the joint tables only
    out = S.summarise_batch(table, plan.restricted(owned))
    if not plan.columns or plan.columns[0] not in owned:
        out["rows"] = 0
    return out


def segment_reads(segments: Sequence[str], derive: Optional["SegmentRules"]) -> Tuple[str, ...]:
    """What a unit reads beside its own columns for the joint tables: the segment columns of the data, and the
    inputs of the ones `derive` makes from each batch instead (the pipeline's estrato and cluster)."""
    made = set(derive.names) & set(segments) if derive is not None else set()
    inputs = list(derive.inputs) if made and derive is not None else []
    return tuple(dict.fromkeys([c for c in segments if c not in made] + inputs))


def derived(table: pa.Table, derive: Optional["SegmentRules"]) -> pa.Table:
    """The batch with the segment columns `derive` makes from it (as read when there is none)."""
    return derive.apply(table) if derive is not None else table


def with_segments(units: Sequence[execution.WorkUnit], segments: Sequence[str]) -> Tuple[List[execution.WorkUnit],
                                                                                         Dict[str, frozenset]]:
    """Units that also read `segments` (`segment_reads`: issue 30, the joint tables are counted in the same pass,
    no extra read), and which units count each column (`BatchPlan.owner`): a segment column that is a feature too
    is read by every unit and counted by the units that planned it."""
    if not segments:
        return list(units), {}
    holders: Dict[str, set] = {}
    for u in units:
        for c in u.columns or ():
            holders.setdefault(c, set()).add(u.index)
    owner = {c: frozenset(held) for c, held in holders.items()}
    out = [dataclasses.replace(u, columns=tuple(u.columns) + tuple(c for c in segments if c not in u.columns))
           if u.columns is not None else u for u in units]
    return out, owner


def sample_positions(unit: execution.WorkUnit, step: int) -> np.ndarray:
    """Offsets, within the unit's table, of the rows whose position in the whole input is a multiple of `step`:
    every `step`-th row of the input, whatever the layout."""
    parts, offset = [], 0
    for piece in unit.ranges:
        parts.append(offset + np.arange((-piece.first_row) % step, piece.rows, step, dtype=np.int64))
        offset += piece.rows
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def sample_unit(table: pa.Table, unit: execution.WorkUnit, columns: Sequence[str], step: int) -> Dict[str, list]:
    """The unit's sampled values (every `step`-th row of the whole input) of its numeric columns: per column a
    list of one sorted array of the non-missing values (sorted here, in parallel, so the driver only merges)."""
    names = [c for c in columns if unit.columns is None or c in unit.columns]
    picked = table.select(names)
    if step > 1:
        picked = picked.take(pa.array(sample_positions(unit, step)))
    out = {}
    for name in names:
        values = S.numeric_values(picked.column(name), name)
        values = values[~np.isnan(values)]
        values.sort()
        out[name] = [values]
    return out


def merge_samples(a: Optional[Dict[str, list]], b: Dict[str, list]) -> Dict[str, list]:
    """Sampled pieces per column, gathered (concatenated once, at the end: `_sorted_sample`)."""
    if a is None:
        return b
    for name, pieces in b.items():
        a.setdefault(name, []).extend(pieces)
    return a


def _sorted_sample(pieces: Sequence[np.ndarray]) -> np.ndarray:
    if not pieces:
        return np.empty(0, dtype=np.float64)
    if len(pieces) == 1:
        return pieces[0]
    return np.sort(np.concatenate(pieces), kind="stable")  # timsort: merges the sorted runs


def reduce(source: Source, plan: S.BatchPlan, derive: Optional["SegmentRules"] = None) -> dict:
    """Run `plan` over all of `source` and merge the per-unit summaries."""
    extra = segment_reads(plan.segments, derive)
    read = plan.columns + [c for c in extra if c not in plan.columns]
    if source.table is not None:
        return summarise_unit(source.table.select(read), _whole_table(source.table), plan=plan, derive=derive)
    if source.dataset is None:
        units, owner = with_segments(_plan_units(source, plan.columns), extra)
        plan = dataclasses.replace(plan, owner=owner)
        merged = execution.map_reduce(summarise_unit, units, S.merge, columns=read,
                                      kwargs={"plan": plan, "derive": derive})
        return merged if merged is not None else _empty_summary(plan)
    ds = execution.dataset_columns(source.dataset, read)
    merged = execution.reduce_dataset(ds, functools.partial(summarise_table, plan=plan, derive=derive), S.merge)
    return merged if merged is not None else _empty_summary(plan)


def summarise_table(table: pa.Table, plan: S.BatchPlan, derive: Optional["SegmentRules"] = None) -> dict:
    """`S.summarise_batch` of one block of a Ray Dataset, with the segment columns `derive` makes from it."""
    return S.summarise_batch(derived(table, derive), plan)


def _empty_summary(plan: S.BatchPlan) -> dict:
    plan = dataclasses.replace(plan, segments=())
    return S.summarise_batch(pa.table({c: pa.array([], pa.float64()) for c in plan.numeric}
                                      | {c: pa.array([], pa.string()) for c in plan.categorical}), plan)


def fit_unit(table: pa.Table, unit: execution.WorkUnit, numeric: Sequence[str], categorical: Sequence[str],
             ks_bins: int, psi_bins: int, step: int, first_column: str, segments: Sequence[str] = (),
             owner: Optional[Dict[str, frozenset]] = None, derive: Optional["SegmentRules"] = None) -> dict:
    """The reference fitted in one read, for a unit that holds every row of its columns (in input order): the
    sample (every `step`-th row), the KS edges from it, slot counts, the exact PSI edges and counts; category
    counts. The same numbers as the passes of `fit_reference` over smaller units: {"rows", "numeric", "categories"}."""
    names = set(unit.columns) if unit.columns is not None else set(numeric) | set(categorical)
    if owner:  # not the segment columns this unit reads for the joint tables only
        names = {c for c in names if c not in owner or unit.index in owner[c]}
    out: dict = {"rows": table.num_rows if first_column in names else 0, "numeric": {}, "categories": {}}
    codes = S.segment_codes(derived(table, derive), segments) if segments else {}
    if codes:
        out["joint"] = {}
    positions = sample_positions(unit, step) if step > 1 else None
    for name in numeric:
        if name not in names:
            continue
        values = S.numeric_values(table.column(name), name)
        finite = values[~np.isnan(values)]
        finite.sort()
        if positions is None:
            sampled = finite
        else:
            sampled = values[positions]
            sampled = sampled[~np.isnan(sampled)]
            sampled.sort()
        edges = S.sample_edges(sampled, ks_bins)
        bounds = S.sorted_slot_bounds(finite, edges)
        slots = np.append(np.diff(bounds), len(values) - len(finite)).astype(np.int64)
        collected = S.empty_collected()
        lo, hi, _, n_finite = S.psi_ranks(slots, psi_bins)
        if n_finite:
            parts = [(code, finite[bounds[code]:bounds[code + 1]])
                     for code in S.needed_slots(slots, np.concatenate([lo, hi]))]
            if parts:
                collected = (np.concatenate([np.full(len(v), code, dtype=np.int64) for code, v in parts]),
                             np.concatenate([v for _, v in parts]))
        out["numeric"][name] = numeric_reference(slots, edges, collected, psi_bins)
        if codes:
            out["joint"][name] = S.numeric_joint(values, out["numeric"][name].psi_edges, codes)
    for name in categorical:
        if name in names:
            out["categories"][name] = S.category_counts(table.column(name))
            if codes:
                out["joint"][name] = S.categorical_joint(table.column(name), codes)
    return out


def merge_fitted(a: Optional[dict], b: dict) -> dict:
    """Fitted column groups together (each column is fitted by exactly one unit)."""
    if a is None:
        return b
    out = {"rows": a["rows"] + b["rows"], "numeric": {**a["numeric"], **b["numeric"]},
           "categories": {**a["categories"], **b["categories"]}}
    if "joint" in a or "joint" in b:  # each feature's joint tables come from the one unit that fits it
        out["joint"] = {**a.get("joint", {}), **b.get("joint", {})}
    return out


def numeric_reference(slots: np.ndarray, ks_edges: np.ndarray, collected, psi_bins: int) -> NumericReference:
    """A numeric column's reference from its slot counts and the values of the slots holding the PSI quantiles."""
    lo, hi, gamma, n_finite = S.psi_ranks(slots, psi_bins)
    if n_finite == 0:  # no finite value: PSI has one empty finite bin beside -inf, +inf and missing
        return NumericReference(ks_edges=ks_edges, ks_slots=slots, psi_edges=np.empty(0),
                                psi_counts=S.psi_counts_from_slots(slots, ks_edges, S.empty_collected(), np.empty(0)))
    values = S.order_statistics(slots, ks_edges, collected, np.concatenate([lo, hi]))
    psi_edges = edges_from_order_stats(values[: len(lo)], values[len(lo):], gamma)
    psi_counts = S.psi_counts_from_slots(slots, ks_edges, collected, psi_edges)
    return NumericReference(ks_edges=ks_edges, ks_slots=slots, psi_edges=psi_edges, psi_counts=psi_counts)


def _fit_in_one_read(source: Source, numeric: Sequence[str], categorical: Sequence[str],
                     cfg: DriftConfig, derive: Optional["SegmentRules"] = None) -> Optional[dict]:
    """The reference fitted with one read of each column, when every unit can hold all rows of its columns
    (an in-memory table; files whose columns fit execution.MAX_UNIT_BYTES each); else None."""
    columns = list(numeric) + list(categorical)
    step = max(1, -(-source.rows() // cfg.sample_rows))  # ceil: at most sample_rows rows, as `sample`
    segments = tuple(cfg.segment_columns)
    kwargs: Dict[str, Any] = {"numeric": list(numeric), "categorical": list(categorical), "ks_bins": cfg.ks_bins,
              "psi_bins": cfg.psi_bins, "step": step, "first_column": columns[0], "segments": segments,
              "derive": derive}
    extra = segment_reads(segments, derive)
    if source.table is not None:
        read = columns + [c for c in extra if c not in columns]
        return fit_unit(source.table.select(read), _whole_table(source.table), **kwargs)
    if source.dataset is not None or len(_type_groups(source, columns)) > 1:
        return None  # a unit holding every row would mix files of different types: the passes plan per type
    units = execution.plan_whole_columns(source.files or (), columns, groups=source.row_groups())
    if units is None:
        return None
    units, kwargs["owner"] = with_segments(units, extra)
    return execution.map_reduce(fit_unit, units, merge_fitted, columns=columns, kwargs=kwargs)


# --- the sample that places the KS edges -------------------------------------------------------------------


def sample(source: Source, columns: Sequence[str], rows: int) -> Dict[str, np.ndarray]:
    """A deterministic sample of about `rows` rows of the numeric `columns`, as sorted non-missing values: every
    k-th row of the whole input (files, tables), the same on any layout; a row-hash sample of a Ray Dataset."""
    if not columns:
        return {}
    if source.dataset is not None:
        table = _sample_dataset(source.dataset, columns, rows)
        out = {}
        for c in columns:
            values = S.numeric_values(table.column(c), c)
            out[c] = np.sort(values[~np.isnan(values)])
        return out
    total = source.rows()
    step = max(1, -(-total // rows))  # ceil: at most `rows` rows
    merged = _map_reduce(source, sample_unit, columns, merge_samples, {"columns": list(columns), "step": step})
    merged = merged or {}
    return {c: _sorted_sample(merged.get(c, [])) for c in columns}


def _hash_sample(table: pa.Table, columns: List[str], fraction: float) -> pa.Table:
    # A row's hash depends only on its values, so the same rows are kept however the data is split into blocks.
    import pandas as pd

    frame = table.select(columns[:8]).to_pandas()
    keys = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return table.filter(pa.array(keys < np.uint64(fraction * 2.0**64)))


def _sample_dataset(ds, columns: Sequence[str], rows: int) -> pa.Table:
    ds = execution.dataset_columns(ds, columns)
    total = execution.dataset_rows(ds)
    if total > rows:
        tables = execution.dataset_tables(ds, _hash_sample, {"columns": list(columns), "fraction": rows / total})
    else:
        tables = execution.dataset_tables(ds)
    if not tables:
        return pa.table({c: pa.array([], pa.float64()) for c in columns})
    return pa.concat_tables([t.select(list(columns)).cast(tables[0].select(list(columns)).schema) for t in tables])


# --- reference and current ---------------------------------------------------------------------------------




def missing_column(file: str, name: str, label: str) -> str:
    """`FILE: column 'x' is missing (LABEL)`, the label (the side, or the folder the file is in) left out when it is
    the file itself: a single-file input is labelled with its own path."""
    return f"{file}: column {name!r} is missing" + (f" ({label})" if label and label != file else "")


def resolve_kinds(reference: Sequence[tuple], current: Sequence[tuple], columns: Sequence[str],
                  overrides: Dict[str, str], ref_label: str, cur_label: str = "current"):
    """(kinds, skipped) from the (file, schema) pairs of both sides: a column's kind is `drift.column_types`' when
    declared, else the one kind its typed files agree on (an Arrow null column, no values at all, takes the kind
    of the files that have values; null everywhere is numeric, all missing). Columns of a type drift does not
    analyse, or numeric in one file and categorical in another, are skipped with the reason (`skipped`: name ->
    reason). A column absent from a file is a DataError naming the file."""
    kinds: Dict[str, str] = {}
    skipped: Dict[str, str] = {}
    sides = [(f, sch, ref_label) for f, sch in reference] + [(f, sch, cur_label) for f, sch in current]
    for name in columns:
        seen: Dict[str, tuple] = {}  # kind -> (file, type), the first file of each kind
        per_side: Dict[str, Dict[str, tuple]] = {ref_label: {}, cur_label: {}}  # the same, per side
        reason = ""
        for file, schema, label in sides:
            if name not in schema.names:
                raise DataError(missing_column(file, name, label))
            arrow_type = schema.field(name).type
            kind, why = S.type_kind(arrow_type)
            if kind is None:
                reason = reason or f"{arrow_type} in {file}: {why}"
                kind = "unsupported"
            seen.setdefault(kind, (file, arrow_type))
            if kind != S.EMPTY:
                per_side[label].setdefault(kind, (file, arrow_type))
        if name in overrides:
            kinds[name] = overrides[name]
            continue
        if current:
            check_schema_change(name, per_side[ref_label], per_side[cur_label])
        typed = [k for k in seen if k != S.EMPTY]
        if reason:
            skipped[name] = reason
        elif len(typed) > 1:
            (f1, t1), (f2, t2) = seen[S.NUMERIC], seen[S.CATEGORICAL]
            skipped[name] = (f"numeric ({t1}) in {f1} but categorical ({t2}) in {f2}: declare"
                             f" drift.column_types.{name}=categorical (or numeric) to analyse it")
        else:
            kinds[name] = typed[0] if typed else S.NUMERIC  # null everywhere: numeric, every value missing
    return kinds, skipped


def check_schema_change(name: str, reference: Dict[str, tuple], current: Dict[str, tuple]) -> None:
    """The drift contract's schema rule: a column of one kind in every typed reference file and of another kind in
    every typed current file (numeric -> text, say, or a type drift does not analyse) is a DataError (exit 3,
    nothing published), as a column missing from the current is: a schema break is never a skipped column that
    lets the check pass. `reference` / `current`: kind -> (first file, Arrow type) of that side's typed files.
    Kinds mixed within one side stay a skip (resolve_kinds); `drift.column_types.NAME` compares the column anyway."""
    if len(reference) != 1 or len(current) != 1 or set(reference) == set(current):
        return
    ((ref_kind, (ref_file, ref_type)),), ((cur_kind, (cur_file, cur_type)),) = reference.items(), current.items()
    raise DataError(f"column {name!r} changed kind: {ref_kind} ({ref_type}) in the reference ({ref_file}) but"
                    f" {cur_kind} ({cur_type}) in the current ({cur_file}); a schema change is a data error, not"
                    f" drift to skip (declare drift.column_types.{name}=numeric|categorical to compare it anyway)")


def fit_reference(data, cfg: DriftConfig, columns: Optional[Sequence[str]] = None,
                  exclude: Sequence[str] = (), label: str = "", current=None,
                  derive: Optional["SegmentRules"] = None) -> ReferenceSummary:
    """Summarise the reference once: KS edges and counts, exact PSI edges and counts, category counts. With
    `current` (the data it will be compared with), column kinds are decided from the files of both sides.
    `derive`: the segment columns of drift.segment_columns made from each batch rather than read."""
    source, numeric, categorical, skipped = _reference_columns(data, cfg, columns, exclude, label, current, derive)
    return _fit(source, numeric, categorical, skipped, cfg, derive)


def fit_and_summarise(reference, current, cfg: DriftConfig, exclude: Sequence[str] = (), label: str = "",
                      current_label: str = "", derive: Optional["SegmentRules"] = None
                      ) -> Tuple[ReferenceSummary, dict]:
    """`fit_reference(reference, ..., current=current)` and `summarise_current` of it, the same numbers bit for bit;
    in one pass over both sides when both are files whose columns each fit one unit (`_fit_and_count`: every task
    fits its column group of the reference, then counts the same columns of the current on the edges it just
    fitted), else in the passes of the two functions."""
    current_source = as_source(current, current_label)
    source, numeric, categorical, skipped = _reference_columns(reference, cfg, None, exclude, label, current, derive)
    together = _fit_and_count(source, current_source, numeric, categorical, skipped, cfg, derive)
    if together is not None:
        return together
    fitted = _fit(source, numeric, categorical, skipped, cfg, derive)
    return fitted, summarise_current(fitted, current_source, cfg, derive=derive)


def _reference_columns(data, cfg: DriftConfig, columns: Optional[Sequence[str]], exclude: Sequence[str],
                       label: str, current, derive: Optional["SegmentRules"] = None
                       ) -> Tuple[Source, Tuple[str, ...], Tuple[str, ...], Dict[str, str]]:
    """(source, numeric, categorical, skipped) of the reference: the analysed columns and their kinds."""
    source = as_source(data, label)
    ref_schemas = source.schemas()
    names = source.schema().names
    wanted = [c for c in (columns if columns is not None else names) if c not in set(exclude)]
    cur_schemas = []
    if current is not None:
        cur_source = as_source(current, "current")
        cur_schemas = [(f, sch) for f, sch in cur_source.schemas()]
        present = set(cur_source.schema().names)
        for c in wanted:
            if c not in present:
                raise DataError(f"{cur_source.label}: column {c!r} is missing")
    require_segments(source, cfg.segment_columns, derive)
    if current is not None:
        require_segments(cur_source, cfg.segment_columns, derive)
    kinds, skipped = resolve_kinds(ref_schemas, cur_schemas, wanted, dict(cfg.column_types), source.label)
    numeric = tuple(c for c in wanted if kinds.get(c) == "numeric")
    categorical = tuple(c for c in wanted if kinds.get(c) == "categorical")
    if not numeric and not categorical:
        why = "; ".join(f"{c}: {r}" for c, r in skipped.items())
        raise DataError(f"{source.label}: no numeric or categorical columns to analyse" + (f" ({why})" if why else ""))
    extras = tuple(c for c in segment_reads(cfg.segment_columns, derive) if c not in numeric + categorical)
    return source.only(numeric + categorical + extras), numeric, categorical, skipped


def require_segments(source: Source, segments: Sequence[str], derive: Optional["SegmentRules"] = None) -> None:
    """Every file of `source` has every segment column (drift.segment_columns) and every input of the ones
    `derive` makes: a DataError naming the file."""
    made = set(derive.names) & set(segments) if derive is not None else set()
    for file, schema in source.schemas() if segments else ():
        for name in segment_reads(segments, derive):
            if name not in schema.names:
                why = "a drift.segment_columns column" if name in segments else "an input of the segment state"
                raise DataError(missing_column(file, name, source.label) + f" ({why})")
        clash = sorted(made & set(schema.names))  # a column of the data would be hidden by the derived one
        if clash:
            raise DataError(f"{file}: has a column {clash[0]!r}, the name of a segment column drift derives")


def _fit(source: Source, numeric: Tuple[str, ...], categorical: Tuple[str, ...], skipped: Dict[str, str],
         cfg: DriftConfig, derive: Optional["SegmentRules"] = None) -> ReferenceSummary:
    fitted = _fit_in_one_read(source, numeric, categorical, cfg, derive)
    if fitted is not None:
        if fitted["rows"] == 0:
            raise DataError(f"{source.label}: no rows")
        numeric_refs = {c: fitted["numeric"][c] for c in numeric}
        return _reference(fitted["rows"], numeric_refs, fitted["categories"], categorical, cfg, source, skipped,
                          fitted.get("joint"))

    sampled = sample(source, numeric, cfg.sample_rows)
    ks_edges = {c: S.sample_edges(sampled[c], cfg.ks_bins) for c in numeric}
    guess = {c: _speculative_slots(sampled[c], ks_edges[c], cfg.psi_bins) for c in numeric}
    first = reduce(source, S.BatchPlan(numeric=numeric, categorical=categorical, ks_edges=ks_edges, collect=guess))
    if first["rows"] == 0:
        raise DataError(f"{source.label}: no rows")

    missing_slots = {}
    for c in numeric:
        slots = first["slots"][c]
        lo, hi, _, n_finite = S.psi_ranks(slots, cfg.psi_bins)
        if n_finite == 0:
            continue  # no finite value: no PSI quantile to find
        needed = S.needed_slots(slots, np.concatenate([lo, hi]))
        if len(np.setdiff1d(needed, guess[c])):
            missing_slots[c] = needed
    collected = {c: first["collected"].get(c, S.empty_collected()) for c in numeric}
    if missing_slots:
        log.info("drift: reference quantiles needed a second pass for %d numeric columns", len(missing_slots))
        second = reduce(source, S.BatchPlan(numeric=tuple(missing_slots), ks_edges=ks_edges,
                                            collect=missing_slots, count=False))
        for c in missing_slots:
            collected[c] = second["collected"].get(c, S.empty_collected())

    numeric_refs = {c: numeric_reference(first["slots"][c], ks_edges[c], collected[c], cfg.psi_bins) for c in numeric}
    joint = None
    if cfg.segment_columns:  # the PSI edges are known only now: the joint tables take one more pass in this path
        log.info("drift: reference joint tables for %d segment columns in one more pass (columns too big for one"
                 " unit, or a Ray Dataset)", len(cfg.segment_columns))
        joint = reduce(source, S.BatchPlan(numeric=numeric, categorical=categorical, ks_edges=ks_edges,
                                           psi_edges={c: r.psi_edges for c, r in numeric_refs.items()},
                                           count=False, segments=tuple(cfg.segment_columns)), derive).get("joint")
    return _reference(first["rows"], numeric_refs, first["categories"], categorical, cfg, source, skipped, joint)


def _reference(rows: int, numeric_refs: dict, categories: dict, categorical: Sequence[str], cfg: DriftConfig,
               source: Source, skipped: Dict[str, str], joint: Optional[dict] = None) -> ReferenceSummary:
    # categories in one fixed order (missing last), so the saved summary is the same whatever order units merged in
    categorical_refs = {c: dict(sorted(categories[c].items(), key=lambda kv: (kv[0] is None, str(kv[0]))))
                        for c in categorical}
    return ReferenceSummary(rows=rows, psi_bins=cfg.psi_bins, numeric=numeric_refs,
                            categorical=categorical_refs, source=source.label, skipped=dict(skipped),
                            joint=S.sorted_joint(joint or {}, list(numeric_refs) + list(categorical)))


def _speculative_slots(sampled: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    """KS slots that probably hold the PSI quantiles (from the sorted sample), kept in the first pass to save one."""
    values = sampled[np.isfinite(sampled)]  # the PSI quantiles are over the finite values
    if not len(values) or not len(edges):
        return np.empty(0, dtype=np.int64)
    # the sample's quantiles, by linear interpolation as np.quantile (the values are sorted: no partition needed)
    position = np.arange(1, bins) / bins * (len(values) - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(values) - 1)
    estimates = values[below] + (values[above] - values[below]) * (position - below)
    centre = np.searchsorted(edges, estimates, side="left")
    near = (centre[:, None] + np.arange(-SPECULATIVE_NEIGHBOURS, SPECULATIVE_NEIGHBOURS + 1)[None, :]).ravel()
    near = np.clip(near, 0, len(edges))
    return np.unique(2 * near)  # inside slots only: an edge slot's value is the edge itself


def summarise_current(reference: ReferenceSummary, data, cfg: DriftConfig, label: str = "",
                      derive: Optional["SegmentRules"] = None) -> dict:
    """Count the current data on the reference's edges: {"rows", "slots", "psi", "categories", "skipped"}. A
    column whose current type cannot be read as the reference's kind (strings for a numeric reference, say) is
    not counted but named in "skipped" with the reason; an Arrow null column is all missing, of either kind."""
    source = as_source(data, label)
    skipped = _current_skipped(source, reference.columns, set(reference.numeric), cfg)
    segments = tuple(cfg.segment_columns)
    require_segments(source, segments, derive)
    plan = S.BatchPlan(
        numeric=tuple(c for c in reference.numeric if c not in skipped),
        categorical=tuple(c for c in reference.categorical if c not in skipped),
        ks_edges={c: r.ks_edges for c, r in reference.numeric.items()},
        psi_edges={c: r.psi_edges for c, r in reference.numeric.items()},
        segments=segments,
    )
    if not plan.columns:
        raise DataError(f"{source.label}: no column can be compared with the reference ("
                        + "; ".join(f"{c}: {r}" for c, r in skipped.items()) + ")")
    extra = segment_reads(segments, derive)
    current = reduce(source.only(plan.columns + [c for c in extra if c not in plan.columns]), plan, derive)
    if current["rows"] == 0:
        raise DataError(f"{source.label}: no rows")
    current["skipped"] = skipped
    return current


def _current_skipped(source: Source, columns: Sequence[str], numeric: set, cfg: DriftConfig) -> Dict[str, str]:
    """The reference's columns that the current data cannot be counted for (name -> why): a type that cannot be
    read as the reference's kind. A DataError naming the file for a column it lacks."""
    skipped: Dict[str, str] = {}
    schemas = source.schemas()
    for name in columns:
        expected = "numeric" if name in numeric else "categorical"
        kinds: Dict[str, tuple] = {}
        for file, schema in schemas:
            if name not in schema.names:
                raise DataError(missing_column(file, name, source.label))
            kind, why = S.type_kind(schema.field(name).type)
            if kind != S.EMPTY:
                kinds.setdefault(kind or "unsupported", (file, schema.field(name).type))
            if kind in (S.EMPTY, expected) or name in cfg.column_types or name in skipped:
                continue
            found = kind or f"not analysed ({why})"
            skipped[name] = f"{expected} in the reference but {schema.field(name).type} ({found}) in {file}"
        if name not in cfg.column_types:  # every current file of another kind: a schema change (DataError)
            check_schema_change(name, {expected: ("its saved summary", "as fitted")}, kinds)
    return skipped


# --- reference and current in one pass ---------------------------------------------------------------------


def _fit_and_count(source: Source, current: Source, numeric: Tuple[str, ...], categorical: Tuple[str, ...],
                   skipped: Dict[str, str], cfg: DriftConfig, derive: Optional["SegmentRules"] = None
                   ) -> Optional[Tuple[ReferenceSummary, dict]]:
    """The reference fitted and the current counted in one pass (`fit_count_unit`), or None when that does not
    apply: either side not files, files of several type signatures, or a column group of the two sides together
    above execution.MAX_UNIT_BYTES (each side gets half). One pass instead of two: one round of task starts, one
    tail where a core waits for the last unit, and no driver work between the passes."""
    columns = list(numeric) + list(categorical)
    if not source.files or not current.files:
        return None
    if len(_type_groups(source, columns)) > 1 or len(_type_groups(current, columns)) > 1:
        return None
    current_skipped = _current_skipped(current, columns, set(numeric), cfg)
    counted = set(columns) - set(current_skipped)
    half = execution.MAX_UNIT_BYTES // 2
    units = execution.plan_whole_columns(source.files, columns, groups=source.row_groups(), max_bytes=half)
    current_groups = [g for g in current.row_groups() if g.rows > 0]
    if not units or not counted or not current_groups:
        return None  # the passes give the error (no rows, nothing to compare)
    for unit in units:
        if sum(g.column_bytes.get(c, 0) for g in current_groups for c in unit.columns or ()) > half:
            return None
    ranges, position = [], 0
    for g in current_groups:
        ranges.append(execution.RowRange(g.file, g.index, 0, g.rows, g.rows, position))
        position += g.rows
    step = max(1, -(-source.rows() // cfg.sample_rows))  # as `_fit_in_one_read`
    segments = tuple(cfg.segment_columns)
    units, owner = with_segments(units, segment_reads(segments, derive))
    fit = {"numeric": list(numeric), "categorical": list(categorical), "ks_bins": cfg.ks_bins,
           "psi_bins": cfg.psi_bins, "step": step, "first_column": columns[0], "segments": segments, "owner": owner,
           "derive": derive}
    kwargs = {"fit": fit, "current": tuple(ranges), "numeric": tuple(c for c in numeric if c in counted),
              "categorical": tuple(c for c in categorical if c in counted)}
    fitted, summary = execution.map_reduce(fit_count_unit, units, _merge_pair, columns=columns, kwargs=kwargs,
                                           initial=(None, None))
    if fitted["rows"] == 0:
        raise DataError(f"{source.label}: no rows")
    if summary["rows"] == 0:
        raise DataError(f"{current.label}: no rows")
    reference = _reference(fitted["rows"], {c: fitted["numeric"][c] for c in numeric}, fitted["categories"],
                           categorical, cfg, source, skipped, fitted.get("joint"))
    summary["skipped"] = current_skipped
    return reference, summary


def fit_count_unit(table: pa.Table, unit: execution.WorkUnit, fit: dict, current: Tuple[execution.RowRange, ...],
                   numeric: Tuple[str, ...], categorical: Tuple[str, ...]) -> Tuple[dict, dict]:
    """One column group of both sides: `fit_unit` on the reference's rows (`table`), then the same columns of the
    current data (`current`: all its row ranges) counted on the edges just fitted, as `summarise_unit` counts them
    in `summarise_current`'s pass (rows counted by the group holding the first counted column)."""
    fitted = fit_unit(table, unit, **fit)
    del table
    segments = tuple(fit.get("segments", ()))
    plan = S.BatchPlan(numeric=numeric, categorical=categorical,
                       ks_edges={c: r.ks_edges for c, r in fitted["numeric"].items()},
                       psi_edges={c: r.psi_edges for c, r in fitted["numeric"].items()},
                       segments=segments, owner=fit.get("owner") or {})
    names = tuple(c for c in plan.owned(plan.columns, unit.index) if c in set(unit.columns or ()))
    if not names:
        return fitted, {"rows": 0, "slots": {}, "psi": {}, "collected": {}, "categories": {}}
    extra = segment_reads(segments, fit.get("derive"))
    current_unit = execution.WorkUnit(unit.index, current, names + tuple(c for c in extra if c not in names))
    return fitted, summarise_unit(execution.read_unit(current_unit), current_unit, plan, fit.get("derive"))


def _merge_pair(a: Tuple[Optional[dict], Optional[dict]], b: Tuple[dict, dict]) -> Tuple[dict, dict]:
    return merge_fitted(a[0], b[0]), S.merge(a[1], b[1])
