"""The fitted feature state: what is learned from the train portion, fitted in one pass of mergeable partials.

Each shard (a Ray Data batch) returns a `partial` of its train-portion rows; the driver `merge`s them and
`finalize`s the small JSON-able state that transform.py applies to every batch:

- categorical vocabularies and frequencies: exact value counts, summed (order-independent). Codes are 1..K by
  descending train count (ties by value), capped at features.max_categories; 0 is the explicit unknown code
  (unseen or rarer-than-the-cap values); a null is the value "__missing__" and gets a code like any other.
- winsorizing bounds (clip_quantiles, default p1/p99) and imputation medians of every `value` feature: computed
  exactly (numpy's linear interpolation) on a deterministic sample: the train rows whose salted id hash falls below
  rate * 2^64, rate = min(1, fit_sample_rows / train rows). The sample is a property of each row, so it is the
  same whatever the sharding, and the state is identical across shard layouts. Below fit_sample_rows train rows
  the quantiles are exact on all of train; above, their rank error is about sqrt(p(1 - p) / n): with n = 100k,
  +/-0.16 percentile points at the median and +/-0.03 at p1/p99.
- a feature with no value in the sample gets median 0 and no clipping (its missing flag carries the signal).

The same pass checks the raw values (`check_raw_values`): a null is a missing value (NaN is null), but a raw
column null in every train row, or an infinite number anywhere, is broken input and stops the stage.

Nothing here knows about Ray. `partial` / `merge` fit from whole pandas batches (the pure tests and the one-process
baseline use them); the stage runs the same fit from column groups (`column_partial`: category counts and the fit
sample's raw values, `sample_matrix` on the driver) and checks the raw values in its transform pass
(`raw_value_partial`), with the same results.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kon_ray import storage
from kon_ray.errors import ConfigError, DataError
from kon_ray.features.derive import derive, parse_dates
from kon_ray.features.spec import Spec
from kon_ray.features.split import FIT_SALT, TRAIN, assign, id_hash, month_index, salted

MISSING_CATEGORY = "__missing__"
UNKNOWN_CODE = 0
STATE_VERSION = 1
STATE_FILE = "feature_state.json"  # in features/ (written by the preprocess stage) and in each model folder


def sample_threshold(train_rows: int, sample_rows: int) -> int:
    """Rows whose fit hash is below this (uint64) are in the fit sample; 2^64 - 1 keeps all."""
    if train_rows <= sample_rows:
        return 2**64 - 1
    return int(sample_rows / train_rows * 2**64)


def category_strings(values: pd.Series) -> pd.Series:
    """A categorical column as strings, null -> "__missing__" (codes are looked up by string)."""
    return values.astype("string").fillna(MISSING_CATEGORY)


def partial(batch: pd.DataFrame, spec: Spec, plan: Dict[str, Any], threshold: int) -> Dict[str, Any]:
    """One shard's contribution from its train-portion rows: row count, category counts, fit-sample rows."""
    month_idx = month_index(parse_dates(batch[spec.date_column]))
    split = assign(batch[spec.id_column], month_idx, batch[spec.target_column], plan, sample=False)
    train = batch.loc[split == TRAIN]
    counts = {c: category_strings(train[c]).value_counts().to_dict() for c in spec.categorical}
    h3 = salted(id_hash(train[spec.id_column], plan["seed"]), FIT_SALT)
    in_sample = h3 <= np.uint64(threshold)
    sample = train.loc[in_sample]
    values = spec.of_kind("value")
    derived = derive(sample, spec) if len(sample) else {}
    matrix = np.empty((len(sample), len(values)), dtype=np.float32)
    for j, name in enumerate(values):
        matrix[:, j] = derived[name] if len(sample) else 0
    return {"rows": int(len(train)), "counts": counts, "sample": matrix, "sample_hash": h3[in_sample],
            "present": {c: int(train[c].notna().sum()) for c in spec.raw_columns},
            "infinite": _infinite(batch, spec)}


def _infinite(batch: pd.DataFrame, spec: Spec) -> Dict[str, List[Any]]:
    """column -> [count of +/-inf, smallest id holding one] over every row of the batch (all splits)."""
    found = {}
    for column in spec.raw_columns:
        values = batch[column]
        if pd.api.types.is_float_dtype(values.dtype):
            mask = np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan))
            if mask.any():
                example = batch[spec.id_column].to_numpy()[mask].min()
                found[column] = [int(mask.sum()), example.item() if isinstance(example, np.generic) else example]
    return found


def merge(partials: List[Dict[str, Any]], spec: Spec) -> Dict[str, Any]:
    """Sum counts and pool samples (sorted by hash, so the result does not depend on shard order)."""
    counts: Dict[str, Dict[str, int]] = {c: {} for c in spec.categorical}
    for p in partials:
        for column, column_counts in p["counts"].items():
            target = counts[column]
            for value, n in column_counts.items():
                target[str(value)] = target.get(str(value), 0) + int(n)
    width = len(spec.of_kind("value"))
    samples = [p["sample"] for p in partials if len(p["sample"])]
    sample = np.concatenate(samples) if samples else np.empty((0, width), np.float32)
    hashes = np.concatenate([p["sample_hash"] for p in partials]) if partials else np.empty(0, np.uint64)
    order = np.argsort(hashes, kind="stable")
    present: Dict[str, int] = {}
    infinite: Dict[str, List[Any]] = {}
    for p in partials:
        for column, n in p.get("present", {}).items():
            present[column] = present.get(column, 0) + n
        for column, (n, example) in p.get("infinite", {}).items():
            count, first = infinite.get(column, [0, example])
            infinite[column] = [count + n, min(first, example)]
    return {"rows": sum(int(p["rows"]) for p in partials), "counts": counts, "sample": sample[order],
            "present": present, "infinite": infinite}


def check_raw_values(merged: Dict[str, Any], spec: Spec) -> None:
    """A DataError naming the first raw column (in declared order) that is infinite somewhere or null in every
    train row: no measurement is infinite (it is an upstream division or overflow), and a column with no train
    value cannot be fitted (a feed that stopped, or a renamed source field written as nulls)."""
    for column in spec.raw_columns:
        if column in merged["infinite"]:
            count, example = merged["infinite"][column]
            raise DataError(
                f"column {column!r} has {count:,} infinite values (e.g. {spec.id_column} {example}): a measurement is"
                " never infinite; fix the source, or write null for a missing value"
            )
    if merged["rows"]:
        for column in spec.raw_columns:
            if merged["present"].get(column, merged["rows"]) == 0:
                raise DataError(f"column {column!r} is null in all {merged['rows']:,} train rows: nothing to fit it on")


def finalize(merged: Dict[str, Any], spec: Spec, threshold: int) -> Dict[str, Any]:
    """The JSON-able state: per-value-feature median and clip bounds, per-categorical vocabulary."""
    rows = merged["rows"]
    if rows == 0:
        raise DataError("no train rows to fit the features on: the reference window has no labelled records")
    sample = merged["sample"].astype(np.float64)
    quantiles = [0.5] if spec.clip_quantiles is None else [spec.clip_quantiles[0], 0.5, spec.clip_quantiles[1]]
    numeric: Dict[str, Dict[str, float | None]] = {}
    for j, name in enumerate(spec.of_kind("value")):
        column = sample[:, j]
        column = column[~np.isnan(column)]
        if column.size == 0:  # never observed in train: nothing to clip, impute a neutral 0
            numeric[name] = {"median": 0.0, "low": None, "high": None}
            continue
        q = np.quantile(column, quantiles)
        low, high = (q[0], q[2]) if spec.clip_quantiles is not None else (None, None)
        numeric[name] = {"median": float(q[len(q) // 2] if len(q) == 3 else q[0]), "low": _f(low), "high": _f(high)}
    categorical = {}
    for column in spec.categorical:
        ranked = sorted(merged["counts"][column].items(), key=lambda item: (-item[1], item[0]))
        kept = ranked[: spec.max_categories]
        categorical[column] = {
            "vocabulary": [value for value, _ in kept],  # code = position + 1; 0 = unknown
            "counts": [int(n) for _, n in kept],
            "other_rows": int(sum(n for _, n in ranked[spec.max_categories :])),
        }
    return {
        "version": STATE_VERSION,
        "dataset": spec.dataset,
        "features": [{"name": name, "kind": kind} for name, kind in spec.features],
        "fit": {
            "train_rows": int(rows),
            "sample_rows": int(len(sample)),
            "sample_threshold": str(threshold),
            "quantiles": "numpy linear interpolation on the hash sample; exact when sample_rows == train_rows",
            "clip_quantiles": list(spec.clip_quantiles) if spec.clip_quantiles else None,
            "impute": spec.impute,
        },
        "unknown_code": UNKNOWN_CODE,
        "numeric": numeric,
        "categorical": categorical,
    }


def _f(value) -> float | None:
    return None if value is None else float(value)


def save_feature_state(path: str, state: Mapping[str, Any]) -> None:
    storage.write_json(path, state)


def load_feature_state(path: str) -> Dict[str, Any]:
    """A saved feature_state.json (a file, or the folder holding it), checked for its version."""
    if not path.endswith(".json"):
        path = storage.join(path, STATE_FILE)
    if not storage.exists(path):
        raise ConfigError(f"{path}: no feature state here; run the preprocess stage first")
    state = storage.read_json(path)
    if state.get("version") != STATE_VERSION:
        raise ConfigError(f"{path}: feature state version {state.get('version')}, this code reads {STATE_VERSION}")
    return state


def feature_columns(state: Mapping[str, Any]) -> List[str]:
    """The model's input feature names, in order."""
    return [f["name"] for f in state["features"]]


# --- the fit and the raw-value checks as per-column and per-row partials over Arrow (the execution layer's units) ---


def value_inputs(spec: Spec) -> List[str]:
    """The raw columns `derive` reads for the value features (record date, series, numerics, flags, dates)."""
    wanted = [spec.date_column]
    for series in spec.series:
        wanted += series.columns
    wanted += [*spec.numeric, *spec.flags, *spec.dates]
    return list(dict.fromkeys(wanted))


def fit_columns(spec: Spec) -> List[str]:
    """Every raw column the fit reads: the categoricals (counted over train) and the value inputs (fit sample)."""
    return list(dict.fromkeys([*spec.categorical, *value_inputs(spec)]))


def arrow_category_counts(values: pa.ChunkedArray | pa.Array) -> Dict[str, int]:
    """`category_strings(values.to_pandas()).value_counts()` as a dict, from Arrow's hash count: the distinct
    values go through the same pandas string conversion; nulls are "__missing__"."""
    counted = pc.value_counts(values)
    distinct, counts = counted.field("values"), counted.field("counts").to_numpy()
    valid = distinct.is_valid().to_numpy(zero_copy_only=False)
    out: Dict[str, int] = {}
    if valid.any():
        names = category_strings(distinct.filter(pa.array(valid)).to_pandas()).tolist()
        for name, n in zip(names, counts[valid]):
            out[name] = out.get(name, 0) + int(n)
    missing = int(counts[~valid].sum())
    if missing:
        out[MISSING_CATEGORY] = out.get(MISSING_CATEGORY, 0) + missing
    return out


def column_partial(table: pa.Table, train: np.ndarray, sample: np.ndarray, spec: Spec) -> Dict[str, Any]:
    """One unit's fit contribution (any group of `fit_columns`): category counts over its train-portion rows and
    the raw values of its fit-sample rows (row order kept)."""
    inputs = set(value_inputs(spec))
    counts = {c: arrow_category_counts(table.column(c).filter(pa.array(train)))
              for c in table.column_names if c in spec.categorical}
    wanted = [c for c in table.column_names if c in inputs]
    return {"counts": counts, "sample": table.select(wanted).filter(pa.array(sample))}


def merge_counts(counts: Dict[str, Dict[str, int]], part: Mapping[str, Mapping[str, int]]) -> Dict[str, Dict[str, int]]:
    for column, column_counts in part.items():
        target = counts.setdefault(column, {})
        for value, n in column_counts.items():
            target[str(value)] = target.get(str(value), 0) + int(n)
    return counts


def sample_matrix(sample: pd.DataFrame, hashes: np.ndarray, spec: Spec) -> np.ndarray:
    """The fit sample's value features (float32, rows x value features) in fit-hash order, as `merge` pools the
    samples of `partial`: derive is row-wise, so deriving the pooled raw rows gives the same values."""
    values = spec.of_kind("value")
    columns = np.empty((len(values), len(sample)), dtype=np.float32)  # feature-major: contiguous writes
    if len(sample):
        derived = derive(sample, spec)
        for j, name in enumerate(values):
            columns[j] = derived[name]
    # (rows x features) in Fortran order, so finalize's per-feature columns are contiguous; same values
    return columns[:, np.argsort(hashes, kind="stable")].T


def raw_value_partial(table: pa.Table, train: np.ndarray, spec: Spec) -> Dict[str, Any]:
    """`partial`'s "present" (non-missing values per raw column over the train-portion rows; NaN is missing) and
    "infinite" (+/-inf per float column over every row, with the smallest id holding one), from Arrow."""
    present: Dict[str, int] = {}
    infinite: Dict[str, List[Any]] = {}
    ids = None
    for column in spec.raw_columns:
        values = table.column(column)
        if pa.types.is_floating(values.type):
            x = values.to_numpy()  # nulls read as NaN
            present[column] = int(np.count_nonzero(~np.isnan(x[train])))
            inf = np.isinf(x)
            if inf.any():
                ids = table.column(spec.id_column).to_numpy() if ids is None else ids
                example = ids[inf].min()
                infinite[column] = [int(inf.sum()), example.item() if isinstance(example, np.generic) else example]
        elif values.null_count == 0:
            present[column] = int(np.count_nonzero(train))
        else:
            present[column] = int(np.count_nonzero(values.is_valid().to_numpy(zero_copy_only=False)[train]))
    return {"present": present, "infinite": infinite}


def merge_raw_values(merged: Dict[str, Any], part: Mapping[str, Any]) -> Dict[str, Any]:
    """Sum `raw_value_partial`s (as `merge` does for `partial`'s)."""
    for column, n in part["present"].items():
        merged["present"][column] = merged["present"].get(column, 0) + n
    for column, (n, example) in part["infinite"].items():
        count, first = merged["infinite"].get(column, [0, example])
        merged["infinite"][column] = [count + n, min(first, example)]
    return merged
