"""PreprocessSplit: plan the splits, fit the feature state on train, transform every shard and write the splits.

The only module of kon_ray/features that touches Ray or files. Three passes, none of which holds the feature
matrix in one process:

1. plan (driver): the id, date and target columns of every row (3 narrow columns) -> the date windows and each
   class's exact test / sampling thresholds (split.py);
2. fit (Ray Data map_batches): each shard returns a partial (category counts and the deterministic fit sample of
   its train rows), merged on the driver into feature_state.json (state.py);
3. transform (Ray Data map_batches, streaming into a Datasink in the same fused tasks): each shard is assigned,
   filtered to its kept rows, transformed and written to train/, test/ or current/ as Parquet parts.

Outputs (under the stage folder, features/ in the run folder):
    train/ test/ current/   Parquet parts: passthrough columns, population, features (see transform.py)
    feature_state.json      the fitted state (load_feature_state, feature_columns)
    split_summary.json      rows per split and class, feature count and names, the split plan
"""

from __future__ import annotations

import logging
import pickle
import time
import uuid
from collections import Counter
from typing import Any, Dict, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.datasource import Datasink

from kon_ray import storage
from kon_ray.context import RunContext
from kon_ray.errors import DataError, KonError
from kon_ray.features import split as splits
from kon_ray.features.derive import parse_dates
from kon_ray.features.spec import POPULATION, Spec, build_spec
from kon_ray.features.state import (
    check_raw_values,
    feature_columns,
    finalize,
    load_feature_state,
    merge,
    partial,
    sample_threshold,
    save_feature_state,
)
from kon_ray.features.transform import feature_arrays, population_of, transform_batch

__all__ = ["run", "load_feature_state", "feature_columns", "transform_batch"]

log = logging.getLogger("kon_ray")

# Ray Data may hold at most this share of the object store in flight, so the read -> transform -> write stream
# stays bounded (and leaves room for whatever else shares the Ray).
OBJECT_STORE_SHARE = 0.5
MAX_IN_FLIGHT_BYTES = 2 * 1024**3


def run(ctx: RunContext) -> Dict[str, Any]:
    from kon_ray.ingest import read_dataset, read_ingested

    dataset_plain = ctx.plain["dataset"]
    spec = build_spec(dataset_plain)
    files = read_ingested(ctx)["files"]
    check_columns(files[0], spec)
    split_cfg = ctx.config.split
    clock = time.perf_counter()
    ids, month_idx, targets = read_keys(files, spec)
    try:
        plan = splits.make_plan(
            ids,
            month_idx,
            targets,
            seed=ctx.config.seed,
            current_months=split_cfg.current_months,
            reference_months=split_cfg.reference_months,
            test_fraction=split_cfg.test_fraction,
            train_per_class=split_cfg.train_per_class,
            test_per_class=split_cfg.test_per_class,
        )
    except ValueError:
        raise DataError(f"{spec.date_column}: no record has a date; cannot split by date window") from None
    portion = splits.assign(ids, month_idx, targets, plan, sample=False)
    train_rows = int((portion == splits.TRAIN).sum())
    if train_rows == 0:
        raise DataError(
            f"no labelled records before the current window (split.current_months={split_cfg.current_months},"
            f" last month {plan['last_month']}): nothing to train on; lower split.current_months"
        )
    del ids, month_idx, targets, portion
    log.info("preprocess: %d features, %d train-portion rows, plan in %.1f s", len(spec.features), train_rows,
             time.perf_counter() - clock)

    threshold = sample_threshold(train_rows, spec.fit_sample_rows)
    clock = time.perf_counter()
    with streaming_memory_limit(), ray_errors():
        state = fit(shards(read_dataset(files, spec.raw_columns), spec), spec, plan, threshold)
    save_feature_state(ctx.out("feature_state.json"), state)
    log.info("preprocess: fitted on %d sample rows in %.1f s", state["fit"]["sample_rows"], time.perf_counter() - clock)
    clock = time.perf_counter()

    sink = SplitParquetSink(ctx.output_dir, spec.target_column)
    with streaming_memory_limit(), ray_errors():
        transformed = shards(read_dataset(files, spec.raw_columns), spec).map_batches(
            _transform_block,
            batch_format="pyarrow",
            batch_size=spec.batch_rows,
            zero_copy_batch=True,
            fn_kwargs={"spec": spec, "state": state, "plan": plan},
        )
        transformed.write_datasink(sink)
    counts = sink.counts
    log.info("preprocess: transformed and wrote the splits in %.1f s", time.perf_counter() - clock)
    summary = {
        "dataset": spec.dataset,
        "rows": {name: int(sum(counts.get(name, {}).values())) for name in splits.SPLITS.values()},
        "rows_per_class": {name: dict(sorted(counts.get(name, {}).items())) for name in splits.SPLITS.values()},
        "population_missing_rows": sink.population_missing,
        "feature_count": len(spec.features),
        "features": feature_columns(state),
        "passthrough": [*spec.passthrough, POPULATION],
        "train_portion_rows": train_rows,
        "plan": plan,
    }
    storage.write_json(ctx.out("split_summary.json"), summary)
    for name in splits.SPLITS.values():  # an empty split is still a folder, so readers find it
        if summary["rows"][name] == 0:
            storage.write_text(ctx.out(name, ".empty"), "")
    print(f"preprocess {spec.dataset}: {len(spec.features)} features; rows {summary['rows']}")
    return {
        "rows": sum(summary["rows"].values()),
        "train_rows": summary["rows"]["train"],
        "test_rows": summary["rows"]["test"],
        "current_rows": summary["rows"]["current"],
        "feature_count": len(spec.features),
    }


def check_columns(file: str, spec: Spec) -> None:
    """Every raw column the features read is in the data: a DataError naming the first that is not."""
    fs, fs_path = storage.filesystem(file)
    with fs.open_input_file(fs_path) as handle:
        names = set(pq.ParquetFile(handle).schema_arrow.names)
    missing = [c for c in spec.raw_columns if c not in names]
    if missing:
        raise DataError(f"{file}: column {missing[0]!r} is missing; the dataset's features config names it")


def read_keys(files: Sequence[str], spec: Spec) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """id, month index and target of every row, read on the driver (3 narrow columns)."""
    ids, months, targets = [], [], []
    columns = [spec.id_column, spec.date_column, spec.target_column]
    for file in files:
        fs, fs_path = storage.filesystem(file)
        with fs.open_input_file(fs_path) as handle:
            table = pq.read_table(handle, columns=columns)
        ids.append(table.column(0).to_numpy())
        months.append(splits.month_index(parse_dates(table.column(1).to_pandas())))
        targets.append(table.column(2).to_pandas())
    return np.concatenate(ids), np.concatenate(months), pd.concat(targets, ignore_index=True)


def shards(ds, spec: Spec):
    """The raw dataset cut into blocks of at most batch_rows rows, streaming.

    A Parquet file with one big row group is one read task; without this its whole transform would run in that
    one task, on one core. Small raw blocks (~60 columns x 32k rows, ~15 MB) are cheap to hand between tasks.
    """
    return ds.repartition(target_num_rows_per_block=spec.batch_rows)


def fit(ds, spec: Spec, plan: Dict[str, Any], threshold: int) -> Dict[str, Any]:
    """One pass over the shards: partials (pickled, one small row per batch) merged and finalized on the driver."""
    partials = ds.map_batches(
        _fit_block,
        batch_format="pandas",
        batch_size=spec.batch_rows,
        fn_kwargs={"spec": spec, "plan": plan, "threshold": threshold},
    ).take_all()
    merged = merge([pickle.loads(row["partial"]) for row in partials], spec)
    check_raw_values(merged, spec)
    return finalize(merged, spec, threshold)


def _fit_block(batch: pd.DataFrame, spec: Spec, plan: Dict[str, Any], threshold: int) -> pd.DataFrame:
    return pd.DataFrame({"partial": [pickle.dumps(partial(batch, spec, plan, threshold))]})


def _transform_block(table: pa.Table, spec: Spec, state: Dict[str, Any], plan: Dict[str, Any]) -> pa.Table:
    """Assign each row its split, keep the kept rows, transform them; Arrow in, Arrow out."""
    keys = table.select([spec.id_column, spec.date_column, spec.target_column]).to_pandas()
    month_idx = splits.month_index(parse_dates(keys[spec.date_column]))
    split = splits.assign(keys[spec.id_column], month_idx, keys[spec.target_column], plan)
    keep = split != splits.EXCLUDED
    table = table.filter(pa.array(keep))
    frame = table.to_pandas()
    out = {c: table.column(c) for c in spec.passthrough}  # passthrough keeps its Arrow type exactly
    out[POPULATION] = pa.array(population_of(frame[spec.population_column], spec.industrial_values), pa.string())
    for name, values in feature_arrays(frame, state, spec).items():
        out[name] = pa.array(values)
    out["split"] = pa.array(np.asarray(list(splits.SPLITS.values()), dtype=object)[split[keep] - 1], pa.string())
    return pa.table(out)


class SplitParquetSink(Datasink):
    """A Ray Data Datasink writing each block's rows to <out>/<split>/ as Parquet, one file per task and split.

    Each write task opens one ParquetWriter per split it sees and appends every block as a row group, so a task
    holds one block at a time. File names carry this write's id and the task index: a retried task rewrites its
    own files instead of adding duplicates. Returns per-split, per-class row counts.
    """

    def __init__(self, out_dir: str, target_column: str) -> None:
        self.out_dir = out_dir
        self.target_column = target_column
        self.write_id = uuid.uuid4().hex[:8]
        self.counts: Dict[str, Dict[str, int]] = {}
        self.population_missing = 0

    def write(self, blocks: Iterable[Any], ctx) -> Dict[str, Any]:
        writers: Dict[str, pq.ParquetWriter] = {}
        counts: Dict[str, Counter] = {}
        population_missing = 0
        fs, base = storage.filesystem(self.out_dir)
        try:
            for block in blocks:
                table = block if isinstance(block, pa.Table) else pa.Table.from_pandas(block, preserve_index=False)
                if table.num_rows == 0:
                    continue
                population_missing += table.column(POPULATION).null_count
                split_values = table.column("split").to_numpy(zero_copy_only=False)
                data = table.drop_columns(["split"])
                for name in np.unique(split_values):
                    part = data.filter(pa.array(split_values == name))
                    if name not in writers:
                        path = f"{base}/{name}/part-{self.write_id}-{ctx.task_idx:05d}.parquet"
                        fs.create_dir(f"{base}/{name}", recursive=True)
                        writers[name] = pq.ParquetWriter(path, part.schema, filesystem=fs)
                    writers[name].write_table(part)
                    target = part.column(self.target_column).to_pandas().fillna("__missing__")
                    counts.setdefault(str(name), Counter()).update(target.value_counts().to_dict())
        finally:
            for writer in writers.values():
                writer.close()
        return {"counts": {k: dict(v) for k, v in counts.items()}, "population_missing": population_missing}

    def on_write_complete(self, write_result) -> None:
        for result in write_result.write_returns:
            for name, per_class in result["counts"].items():
                target = self.counts.setdefault(name, {})
                for cls, n in per_class.items():
                    target[str(cls)] = target.get(str(cls), 0) + int(n)
            self.population_missing += int(result["population_missing"])


class streaming_memory_limit:
    """Bound what Ray Data keeps in flight while the stage runs, so read -> transform -> write streams instead of
    piling blocks up; the previous limits are restored afterwards (the DataContext is shared by later stages)."""

    def __enter__(self) -> None:
        import ray
        from ray.data import DataContext

        store = ray.available_resources().get("object_store_memory") or MAX_IN_FLIGHT_BYTES
        self.context = DataContext.get_current()
        self.saved = (self.context.execution_options.resource_limits, self.context.enable_progress_bars)
        self.context.execution_options.resource_limits = self.saved[0].copy(
            object_store_memory=min(MAX_IN_FLIGHT_BYTES, OBJECT_STORE_SHARE * store)
        )
        self.context.enable_progress_bars = False

    def __exit__(self, *exc) -> bool:
        self.context.execution_options.resource_limits, self.context.enable_progress_bars = self.saved
        return False


class ray_errors:
    """Re-raise a KonError raised inside a Ray task as itself (one line), not as Ray's wrapped traceback."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, KonError):
            return False
        cause = _kon_cause(exc)
        if cause is not None:
            raise cause from None
        return False


def _kon_cause(exc: BaseException | None, depth: int = 0) -> KonError | None:
    if exc is None or depth > 10:
        return None
    if isinstance(exc, KonError):
        return exc
    for nxt in (getattr(exc, "cause", None), exc.__cause__, exc.__context__):
        if isinstance(nxt, BaseException):
            found = _kon_cause(nxt, depth + 1)
            if found is not None:
                return found
    return None
