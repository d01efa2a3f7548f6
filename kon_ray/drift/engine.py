"""Where drift meets Ray: read the data, run the per-shard summaries, merge them on the driver.

Passes over the data (each reads only the analysed columns):
  reference  1. a small deterministic sample places the KS edges (strided row groups of the Parquet files, or
                a row-hash sample of a Dataset); it never enters a statistic.
             2. every shard counts KS slots and categories, and keeps the values of the few KS slots that the
                sample says hold the quantiles PSI needs (kon_ray.drift.summary).
             3. only if a needed slot was not kept: one more pass over those numeric columns for those slots.
  current    1. every shard counts KS slots, PSI bins and categories on the reference's edges.
Parquet files run as plain Ray tasks over runs of row groups (one summary per task); a Ray Dataset (predictions,
tests) runs as map_batches with one summary row per block. Each shard returns one small summary; summaries
merge exactly, so no result depends on how the data is split. User errors raised inside Ray tasks come back as
the original KonError (`unwrap`).
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kon_ray import storage
from kon_ray.drift import summary as S
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.psi import edges_from_order_stats, quantile_ranks
from kon_ray.drift.reference import NumericReference, ReferenceSummary
from kon_ray.errors import ConfigError, DataError, KonError

log = logging.getLogger("kon_ray")

SPECULATIVE_NEIGHBOURS = 2  # KS slots kept on each side of the sample's guess for a PSI quantile


@dataclass(frozen=True)
class Source:
    """Data to summarise: Parquet files (local or s3://) or a Ray Dataset."""

    label: str
    files: Optional[tuple] = None
    dataset: object = None  # ray.data.Dataset

    def schema(self) -> pa.Schema:
        if self.files:
            from kon_ray.ingest import read_metadata

            return read_metadata(self.files[0])[0]
        try:  # one row as Arrow: the same types whether the blocks are Arrow or pandas
            return self.dataset.take_batch(1, batch_format="pyarrow").schema
        except ValueError:
            raise DataError(f"{self.label}: the dataset is empty") from None

    def rows(self) -> int:
        if self.files:
            from kon_ray.ingest import read_metadata

            return sum(read_metadata(f)[1] for f in self.files)
        return self.dataset.count()

    def to_dataset(self, columns: Sequence[str]):
        if self.files:
            from kon_ray.ingest import read_dataset

            return read_dataset(list(self.files), columns)
        return self.dataset.select_columns(list(columns))


def as_source(data: Union[str, Sequence[str], pd.DataFrame, object], label: str = "") -> Source:
    """A path (file or folder of Parquet parts), several paths, a pandas DataFrame or a Ray Dataset."""
    if isinstance(data, Source):
        return data
    if isinstance(data, str):
        from kon_ray.ingest import find_files

        return Source(label=label or data, files=tuple(find_files(data)))
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, str) for p in data):
        from kon_ray.ingest import find_files

        # An empty split (e.g. no test rows) is still a folder; only all of them empty is an error.
        files = tuple(f for path in data if storage.list_files(path) for f in find_files(path))
        if not files:
            find_files(data[0])  # raises the DataError naming the path
        return Source(label=label or ", ".join(data), files=files)
    import ray.data

    if isinstance(data, pd.DataFrame):
        if data.empty:
            raise DataError(f"{label or 'data frame'}: no rows")
        return Source(label=label or "data frame", dataset=ray.data.from_pandas(data))
    if isinstance(data, ray.data.Dataset):
        return Source(label=label or "dataset", dataset=data)
    raise ConfigError(f"drift input {label!r}: expected a path, a pandas DataFrame or a Ray Dataset")


def unwrap(exc: BaseException) -> Optional[KonError]:
    """The KonError a Ray task raised, found through Ray's wrappers (RayTaskError.cause, __cause__)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, KonError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
        seen += 1
    return None


def _summary_row(table: pa.Table, plan: S.BatchPlan) -> pa.Table:
    return pa.table({"summary": pa.array([pickle.dumps(S.summarise_batch(table, plan), protocol=5)], pa.binary())})


def _summarise_row_groups(units: Sequence[tuple], plan: S.BatchPlan) -> Optional[dict]:
    """One Ray task: read its (file, row group) units column by column and merge their summaries."""
    merged = None
    for file, group in units:
        fs, path = storage.filesystem(file)
        with fs.open_input_file(path) as handle:
            table = pq.ParquetFile(handle).read_row_group(group, columns=plan.columns)
        merged = S.merge(merged, S.summarise_batch(table, plan))
    return merged


def _row_groups(files: Sequence[str]) -> List[tuple]:
    units = []
    for file in files:
        fs, path = storage.filesystem(file)
        with fs.open_input_file(path) as handle:
            units += [(file, g) for g in range(pq.ParquetFile(handle).metadata.num_row_groups)]
    return units


def _reduce_files(files: Sequence[str], plan: S.BatchPlan) -> Optional[dict]:
    """Parquet files: plain Ray tasks over contiguous runs of row groups, one summary per task. Measured on a
    loaded 2-core machine this avoids most of Ray Data's per-execution scheduling cost for a counting pass."""
    import ray

    units = _row_groups(files)
    tasks = max(1, min(len(units), 2 * int(ray.cluster_resources().get("CPU", 1))))
    bounds = np.linspace(0, len(units), tasks + 1).astype(int)
    remote = ray.remote(_summarise_row_groups)
    plan_ref = ray.put(plan)
    refs = [remote.remote(units[a:b], plan_ref) for a, b in zip(bounds, bounds[1:]) if b > a]
    merged = None
    try:
        for part in ray.get(refs):
            if part is not None:
                merged = S.merge(merged, part)
    except Exception as exc:
        original = unwrap(exc)
        if original is not None:
            raise original from None
        raise
    return merged


def reduce(source: Source, plan: S.BatchPlan) -> dict:
    """Run `plan` over all of `source` in Ray and merge the per-shard summaries."""
    if source.files:
        merged = _reduce_files(source.files, plan)
        return merged if merged is not None else _empty_summary(plan)
    ds = source.to_dataset(plan.columns)
    out = ds.map_batches(_summary_row, fn_kwargs={"plan": plan}, batch_format="pyarrow", batch_size=None)
    merged = None
    try:
        for batch in out.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
            for blob in batch.column("summary").to_pylist():
                merged = S.merge(merged, pickle.loads(blob))
    except Exception as exc:
        original = unwrap(exc)
        if original is not None:
            raise original from None
        raise
    return merged if merged is not None else _empty_summary(plan)


def _empty_summary(plan: S.BatchPlan) -> dict:
    return S.summarise_batch(pa.table({c: pa.array([], pa.float64()) for c in plan.numeric}
                                      | {c: pa.array([], pa.string()) for c in plan.categorical}), plan)


# --- the sample that places the KS edges -------------------------------------------------------------------


def sample(source: Source, columns: Sequence[str], rows: int) -> Dict[str, np.ndarray]:
    """A deterministic sample of about `rows` rows of the numeric `columns` (independent of Ray's blocks)."""
    if not columns:
        return {}
    if source.files:
        table = _sample_files(source.files, columns, rows)
    else:
        table = _sample_dataset(source.dataset, columns, rows)
    return {c: S.numeric_values(table.column(c), c) for c in columns}


def _sample_files(files: Sequence[str], columns: Sequence[str], rows: int) -> pa.Table:
    """Evenly spaced row groups until `rows` rows, then every k-th row: cheap, and the same on every run."""
    groups = []
    for file in files:
        fs, path = storage.filesystem(file)
        with fs.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        groups += [(file, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    total = sum(g[2] for g in groups)
    chosen = groups
    if total > rows:
        step = max(1, int(len(groups) * rows / total))  # row groups needed, roughly
        picks = np.unique(np.round(np.linspace(0, len(groups) - 1, max(step, 1))).astype(int))
        chosen = [groups[i] for i in picks]
    tables = []
    for file, group, _ in chosen:
        fs, path = storage.filesystem(file)
        with fs.open_input_file(path) as handle:
            tables.append(pq.ParquetFile(handle).read_row_group(group, columns=list(columns)))
    table = pa.concat_tables(tables) if tables else pa.table({})
    if table.num_rows > rows:
        table = table.take(np.arange(0, table.num_rows, math.ceil(table.num_rows / rows)))
    return table


def _hash_sample(table: pa.Table, columns: List[str], fraction: float) -> pa.Table:
    # A row's hash depends only on its values, so the same rows are kept however the data is split into blocks.
    frame = table.select(columns[:8]).to_pandas()
    keys = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return table.filter(pa.array(keys < np.uint64(fraction * 2.0**64)))


def _sample_dataset(ds, columns: Sequence[str], rows: int) -> pa.Table:
    ds = ds.select_columns(list(columns))
    total = ds.count()
    if total > rows:
        ds = ds.map_batches(_hash_sample, fn_kwargs={"columns": list(columns), "fraction": rows / total},
                            batch_format="pyarrow", batch_size=None)
    refs = ds.to_arrow_refs()
    import ray

    tables = [t for t in ray.get(refs) if t.num_rows]
    if not tables:
        return pa.table({c: pa.array([], pa.float64()) for c in columns})
    return pa.concat_tables([t.select(list(columns)).cast(tables[0].select(list(columns)).schema) for t in tables])


# --- reference and current ---------------------------------------------------------------------------------


def column_kinds(schema: pa.Schema, columns: Iterable[str], overrides: Dict[str, str], label: str) -> Dict[str, str]:
    """numeric | categorical per analysed column (drift.column_types wins); a DataError for an absent column."""
    kinds: Dict[str, str] = {}
    for name in columns:
        if name not in schema.names:
            raise DataError(f"{label}: column {name!r} is missing")
        kind = overrides.get(name) or S.column_kind(schema.field(name).type)
        if kind is not None:
            kinds[name] = kind
    return kinds


def fit_reference(data, cfg: DriftConfig, columns: Optional[Sequence[str]] = None,
                  exclude: Sequence[str] = (), label: str = "") -> ReferenceSummary:
    """Summarise the reference once: KS edges and counts, exact PSI edges and counts, category counts."""
    source = as_source(data, label)
    schema = source.schema()
    wanted = [c for c in (columns if columns is not None else schema.names) if c not in set(exclude)]
    kinds = column_kinds(schema, wanted, dict(cfg.column_types), source.label)
    numeric = tuple(c for c in wanted if kinds.get(c) == "numeric")
    categorical = tuple(c for c in wanted if kinds.get(c) == "categorical")
    if not numeric and not categorical:
        raise DataError(f"{source.label}: no numeric or categorical columns to analyse")

    sampled = sample(source, numeric, cfg.sample_rows)
    ks_edges = {c: S.sample_edges(sampled[c], cfg.ks_bins) for c in numeric}
    guess = {c: _speculative_slots(sampled[c], ks_edges[c], cfg.psi_bins) for c in numeric}
    first = reduce(source, S.BatchPlan(numeric=numeric, categorical=categorical, ks_edges=ks_edges, collect=guess))
    if first["rows"] == 0:
        raise DataError(f"{source.label}: no rows")

    ranks = {}
    missing_slots = {}
    for c in numeric:
        slots = first["slots"][c]
        n = int(slots[:-1].sum())
        if n == 0:
            continue  # all missing: PSI has only the missing bin, KS is undefined
        lo, hi, gamma = quantile_ranks(n, cfg.psi_bins)
        ranks[c] = (lo, hi, gamma)
        needed = S.needed_slots(slots, np.concatenate([lo, hi]))
        absent = np.setdiff1d(needed, guess[c])
        if len(absent):
            missing_slots[c] = needed
    collected = {c: first["collected"].get(c, S.empty_collected()) for c in numeric}
    if missing_slots:
        log.info("drift: reference quantiles needed a second pass for %d numeric columns", len(missing_slots))
        second = reduce(source, S.BatchPlan(numeric=tuple(missing_slots), ks_edges=ks_edges,
                                            collect=missing_slots, count=False))
        for c in missing_slots:
            collected[c] = second["collected"].get(c, S.empty_collected())

    numeric_refs = {}
    for c in numeric:
        slots = first["slots"][c]
        if c in ranks:
            lo, hi, gamma = ranks[c]
            values = S.order_statistics(slots, ks_edges[c], collected[c], np.concatenate([lo, hi]))
            psi_edges = edges_from_order_stats(values[: len(lo)], values[len(lo):], gamma)
            psi_counts = S.psi_counts_from_slots(slots, ks_edges[c], collected[c], psi_edges)
        else:
            psi_edges = np.empty(0)
            psi_counts = np.array([0, slots[-1]], dtype=np.int64)
        numeric_refs[c] = NumericReference(ks_edges=ks_edges[c], ks_slots=slots, psi_edges=psi_edges,
                                           psi_counts=psi_counts)
    categorical_refs = {c: first["categories"][c] for c in categorical}
    return ReferenceSummary(rows=first["rows"], psi_bins=cfg.psi_bins, numeric=numeric_refs,
                            categorical=categorical_refs, source=source.label)


def _speculative_slots(sampled: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    """KS slots that probably hold the PSI quantiles (from the sample), kept in the first pass to save one."""
    values = sampled[~np.isnan(sampled)]
    if not len(values) or not len(edges):
        return np.empty(0, dtype=np.int64)
    estimates = np.quantile(values, np.arange(1, bins) / bins)
    centre = np.searchsorted(edges, estimates, side="left")
    near = (centre[:, None] + np.arange(-SPECULATIVE_NEIGHBOURS, SPECULATIVE_NEIGHBOURS + 1)[None, :]).ravel()
    near = np.clip(near, 0, len(edges))
    return np.unique(2 * near)  # inside slots only: an edge slot's value is the edge itself


def summarise_current(reference: ReferenceSummary, data, cfg: DriftConfig, label: str = "") -> dict:
    """Count the current data on the reference's edges: {"rows", "slots", "psi", "categories"}."""
    source = as_source(data, label)
    schema = source.schema()
    kinds = column_kinds(schema, reference.columns, dict(cfg.column_types), source.label)
    for name in reference.columns:
        expected = "numeric" if name in reference.numeric else "categorical"
        if kinds.get(name) != expected:
            raise DataError(
                f"{source.label}: column {name!r} is {kinds.get(name) or schema.field(name).type} here but"
                f" {expected} in the reference"
            )
    plan = S.BatchPlan(
        numeric=tuple(reference.numeric),
        categorical=tuple(reference.categorical),
        ks_edges={c: r.ks_edges for c, r in reference.numeric.items()},
        psi_edges={c: r.psi_edges for c, r in reference.numeric.items()},
    )
    current = reduce(source, plan)
    if current["rows"] == 0:
        raise DataError(f"{source.label}: no rows")
    return current
