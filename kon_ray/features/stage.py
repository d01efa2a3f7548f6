"""PreprocessSplit: plan the splits, fit the feature state on train, transform every row and write the splits.

The only module of kon_ray/features that touches Ray or files; the data work runs on the execution layer
(kon_ray/execution.py: work units from the Parquet footers, plain Ray tasks, user errors unwrapped). Three passes,
none of which holds the feature matrix in one process:

1. plan (driver): the id, date and target columns of every row (3 narrow columns) -> the date windows and each
   class's exact test / sampling thresholds (split.py), and one small role code per row (its split, whether it is
   in the train portion, whether it is in the fit sample), which the tasks look up by the row's position;
2. fit (per-column units): only the columns the state needs (categoricals and the raw inputs of the value
   features), each unit returning the category counts of its train rows and the raw values of its fit-sample rows;
   the driver derives the sample's features and finalizes feature_state.json (state.py). The units split the
   columns when the data has few row groups, so one file with one big row group still spreads over every core;
3. transform (row units): one task per unit reads its rows (the raw columns only), transforms them batch by batch
   and writes its own Parquet part per split, named by the unit's index (a retried task overwrites its own parts);
   it returns row counts and the raw-value checks (an infinite value anywhere, a column null in every train row).

Outputs (under the stage folder, features/ in the run folder):
    train/ test/ current/   Parquet parts: passthrough columns, population, features (see transform.py)
    reference_rest/         the reference window's labelled rows that balanced sampling (split.train_per_class /
                            test_per_class) left out of train and test: with train and test, the whole reference
                            window, which DriftCheck compares (sampling selects what training reads, not what drift
                            compares); empty without sampling
    feature_state.json      the fitted state (load_feature_state, feature_columns)
    split_summary.json      rows per split and class, feature count and names, the split plan
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Dict, List, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kon_ray import execution, storage
from kon_ray.context import RunContext
from kon_ray.errors import DataError
from kon_ray.features import split as splits
from kon_ray.features.derive import parse_dates
from kon_ray.features.spec import POPULATION, Spec, build_spec
from kon_ray.features.state import (
    FIT_SALT,
    STATE_FILE,
    check_raw_values,
    column_partial,
    feature_columns,
    finalize,
    fit_columns,
    load_feature_state,
    merge_counts,
    merge_raw_values,
    raw_value_partial,
    sample_matrix,
    sample_threshold,
    save_feature_state,
)
from kon_ray.features.transform import feature_arrays, population_of, transform_batch

__all__ = ["run", "load_feature_state", "feature_columns", "transform_batch"]

log = logging.getLogger(__name__)

# A row's role, one int8 per row of the input (by position): its split in the low two bits, then two flags.
SPLIT_BITS = 0b0011
TRAIN_PORTION = 0b0100  # in the train portion (before balanced sampling): the rows the fit and the checks see
FIT_SAMPLE = 0b1000  # in the deterministic fit sample (state.py)
REFERENCE_REST = 0b10000  # reference window, labelled, left out by balanced sampling: written to reference_rest/
REST = 4  # the output code of those rows (beside splits.TRAIN / TEST / CURRENT)
OUTPUTS = {**splits.SPLITS, REST: "reference_rest"}
SPLIT_SUMMARY_FILE = "split_summary.json"  # rows per split and class, features, the split plan (tracking logs it)
# The smallest work unit the passes cut (the execution layer's default; tests lower it to cut tiny data finely).
UNIT_MIN_ROWS = execution.MIN_UNIT_ROWS


def run(ctx: RunContext) -> Dict[str, Any]:

    spec = build_spec(ctx.config.dataset)
    files = ctx.ingested()["files"]
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
    roles, sample_hashes = row_roles(ids, month_idx, targets, plan, spec)
    train_rows = int(np.count_nonzero(roles & TRAIN_PORTION))
    if train_rows == 0:
        raise DataError(
            f"no labelled records before the current window (split.current_months={split_cfg.current_months},"
            f" last month {plan['last_month']}): nothing to train on; lower split.current_months"
        )
    del ids, month_idx, targets
    groups = execution.row_groups(files)
    log.info("preprocess: %d features, %d train-portion rows, plan in %.1f s", len(spec.features), train_rows,
             time.perf_counter() - clock)

    clock = time.perf_counter()
    threshold = sample_threshold(train_rows, spec.fit_sample_rows)
    state = fit(files, groups, spec, roles, sample_hashes, train_rows, threshold)
    log.info("preprocess: fitted on %d sample rows in %.1f s", state["fit"]["sample_rows"], time.perf_counter() - clock)

    clock = time.perf_counter()
    units = execution.plan(files, spec.raw_columns, groups=groups, min_rows=UNIT_MIN_ROWS)
    done = transform(units, spec, state, roles, ctx.output_dir)
    check_raw_values({"rows": train_rows, **done["checks"]}, spec)
    save_feature_state(ctx.out(STATE_FILE), state)
    counts = done["counts"]
    log.info("preprocess: transformed and wrote the splits in %.1f s (%d units)", time.perf_counter() - clock,
             len(units))
    summary = {
        "dataset": spec.dataset,
        "rows": {name: int(sum(counts.get(name, {}).values())) for name in splits.SPLITS.values()},
        "reference_rest_rows": int(sum(counts.get(OUTPUTS[REST], {}).values())),
        "rows_per_class": {name: dict(sorted(counts.get(name, {}).items())) for name in splits.SPLITS.values()},
        "population_missing_rows": done["population_missing"],
        "feature_count": len(spec.features),
        "features": feature_columns(state),
        "passthrough": [*spec.passthrough, POPULATION],
        "train_portion_rows": train_rows,
        "plan": plan,
    }
    storage.write_json(ctx.out(SPLIT_SUMMARY_FILE), summary)
    for name in OUTPUTS.values():  # an empty split is still a folder, so readers find it
        if counts.get(name) is None or not sum(counts[name].values()):
            storage.write_text(ctx.out(name, ".empty"), "")
    log.info("preprocess %s: %d features; rows %s", spec.dataset, len(spec.features), summary["rows"])
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
    """id, month index and target of every row, read on the driver (3 narrow columns), files in order."""
    ids, months, targets = [], [], []
    columns = [spec.id_column, spec.date_column, spec.target_column]
    for file in files:
        fs, fs_path = storage.filesystem(file)
        with fs.open_input_file(fs_path) as handle:
            table = pq.read_table(handle, columns=columns)
        ids.append(table.column(0).to_numpy())
        months.append(splits.month_index(_days(table.column(1))))
        targets.append(table.column(2).to_pandas())
    return np.concatenate(ids), np.concatenate(months), pd.concat(targets, ignore_index=True)


def _days(dates: pa.ChunkedArray) -> np.ndarray:
    """`parse_dates` of a date column; Arrow dates convert directly (no per-value Python objects)."""
    if pa.types.is_date(dates.type):
        return dates.cast(pa.date32()).to_numpy().astype("datetime64[D]")  # nulls -> NaT
    return parse_dates(dates.to_pandas())


def row_roles(ids: np.ndarray, month_idx: np.ndarray, targets: pd.Series, plan: Dict[str, Any],
              spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """The role code of every row (its split | TRAIN_PORTION | FIT_SAMPLE) and the fit hashes of the sample rows
    (in row order). Both are functions of the row and the plan, so they do not depend on the file layout."""

    roles = splits.assign(ids, month_idx, targets, plan).astype(np.int8)
    unsampled = splits.assign(ids, month_idx, targets, plan, sample=False)
    train = unsampled == splits.TRAIN
    roles[train] |= TRAIN_PORTION
    left_out = (roles & SPLIT_BITS) == splits.EXCLUDED
    roles[((unsampled == splits.TRAIN) | (unsampled == splits.TEST)) & left_out] |= REFERENCE_REST
    train_at = np.flatnonzero(train)
    h3 = splits.salted(splits.id_hash(ids[train_at], plan["seed"]), FIT_SALT)
    in_sample = h3 <= np.uint64(sample_threshold(len(train_at), spec.fit_sample_rows))
    roles[train_at[in_sample]] |= FIT_SAMPLE
    return roles, h3[in_sample]


def positions(unit: execution.WorkUnit) -> np.ndarray:
    """The position in the whole input of every row a unit reads, in the order it reads them."""
    return np.concatenate([np.arange(r.first_row, r.first_row + r.rows) for r in unit.ranges])


def fit(files: Sequence[str], groups, spec: Spec, roles: np.ndarray, sample_hashes: np.ndarray, train_rows: int,
        threshold: int) -> Dict[str, Any]:
    """The feature state from one pass over the fit's columns only (per-column units), merged on the driver."""
    counts: Dict[str, Dict[str, int]] = {c: {} for c in spec.categorical}
    columns = fit_columns(spec)
    units = execution.plan(files, columns, per_column=True, groups=groups, min_rows=UNIT_MIN_ROWS)
    samples: Dict[Any, List[pa.Table]] = {}
    for unit, part in zip(units, execution.map_units(_fit_block, units, columns=columns,
                                                              kwargs={"spec": spec, "roles": roles})):
        merge_counts(counts, part["counts"])
        samples.setdefault(unit.columns, []).append(part["sample"])
    pooled: Dict[str, pa.ChunkedArray] = {}
    for tables in samples.values():  # every column group holds the same sample rows, in row order
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        for name in table.column_names:
            pooled[name] = table.column(name)
    frame = pa.table(pooled).to_pandas() if pooled else pd.DataFrame(index=range(len(sample_hashes)))
    if len(frame) != len(sample_hashes):
        raise RuntimeError(f"fit sample: {len(frame)} rows read, {len(sample_hashes)} planned")
    merged = {"rows": train_rows, "counts": counts, "sample": sample_matrix(frame, sample_hashes, spec)}
    return finalize(merged, spec, threshold)


def _fit_block(table: pa.Table, unit: execution.WorkUnit, spec: Spec, roles: np.ndarray) -> Dict[str, Any]:
    role = roles[positions(unit)]
    return column_partial(table, (role & TRAIN_PORTION) != 0, (role & FIT_SAMPLE) != 0, spec)


def transform(units: Sequence[execution.WorkUnit], spec: Spec, state: Dict[str, Any], roles: np.ndarray,
              out_dir: str) -> Dict[str, Any]:
    """Run `_transform_block` over every row unit; its counts and raw-value checks merged."""
    counts: Dict[str, Dict[str, int]] = {}
    checks: Dict[str, Any] = {"present": {}, "infinite": {}}
    population_missing = 0
    kwargs = {"spec": spec, "state": state, "roles": roles, "out_dir": out_dir}
    for part in execution.map_units(_transform_block, units, columns=spec.raw_columns, kwargs=kwargs):
        merge_counts(counts, part["counts"])
        merge_raw_values(checks, part["checks"])
        population_missing += part["population_missing"]
    return {"counts": counts, "checks": checks, "population_missing": population_missing}


def _transform_block(table: pa.Table, unit: execution.WorkUnit, spec: Spec, state: Dict[str, Any],
                     roles: np.ndarray, out_dir: str) -> Dict[str, Any]:
    """One unit's whole transform: its rows' splits, the raw-value checks, then per batch_rows rows: keep the kept
    rows, transform, append to this unit's part of each split. Returns row counts per split and class."""
    role = roles[positions(unit)]
    checks = raw_value_partial(table, (role & TRAIN_PORTION) != 0, spec)
    split = role & SPLIT_BITS
    split[(role & REFERENCE_REST) != 0] = REST
    fs, base = storage.filesystem(out_dir)
    writers: Dict[str, pq.ParquetWriter] = {}
    counts: Dict[str, Counter] = {}
    population_missing = 0
    try:
        for lo in range(0, table.num_rows, spec.batch_rows):
            chunk_split = split[lo : lo + spec.batch_rows]
            keep = chunk_split != splits.EXCLUDED
            if not keep.any():
                continue
            chunk = table.slice(lo, spec.batch_rows)
            if not keep.all():
                chunk = chunk.filter(pa.array(keep))
            result = transform_table(chunk, spec, state)
            population_missing += result.column(POPULATION).null_count
            kept = chunk_split[keep]
            for code, name in OUTPUTS.items():
                mask = kept == code
                if not mask.any():
                    continue
                part = result if mask.all() else result.filter(pa.array(mask))
                if name not in writers:
                    fs.create_dir(f"{base}/{name}", recursive=True)
                    path = f"{base}/{name}/{storage.part_name(unit.index)}"
                    writers[name] = pq.ParquetWriter(path, part.schema, filesystem=fs, **write_options(part.schema))
                writers[name].write_table(part)
                target = part.column(spec.target_column).to_pandas().fillna("__missing__")
                counts.setdefault(name, Counter()).update(target.value_counts().to_dict())
    finally:
        for writer in writers.values():
            writer.close()
    return {"counts": {k: {str(c): int(n) for c, n in v.items()} for k, v in counts.items()},
            "population_missing": int(population_missing), "checks": checks}


def write_options(schema: pa.Schema) -> Dict[str, Any]:
    """Parquet writer options for the split parts: dictionary encoding only for the non-numeric columns. The float
    features are nearly all distinct, so pyarrow's default (try a dictionary for every column, then fall back)
    costs about twice the rest of the write for files that come out larger (measured: 0.29 vs 0.10 CPU-s per
    32k rows x 243 columns, 25.4 vs 22.7 MB)."""
    numeric = (pa.types.is_floating, pa.types.is_integer)
    return {"use_dictionary": [f.name for f in schema if not any(is_(f.type) for is_ in numeric)]}


def transform_table(table: pa.Table, spec: Spec, state: Dict[str, Any]) -> pa.Table:
    """Raw rows -> the output columns (transform.py's order); passthrough columns keep their Arrow types."""
    frame = table.to_pandas()
    out = {c: table.column(c) for c in spec.passthrough}
    out[POPULATION] = pa.array(population_of(frame[spec.population_column], spec.industrial_values), pa.string())
    for name, values in feature_arrays(frame, state, spec).items():
        out[name] = pa.array(values)
    return pa.table(out)
