"""Ingest: find the dataset's Parquet files, check them against the declared schema, fingerprint them.

Nothing is computed before the data passes these checks: every file is readable Parquet, every declared column
is there with its declared type and no undeclared one, there is at least one row, ids are unique. Each problem is
a `DataError` naming the file and column. The stage publishes `ingest/ingest.json` (files, rows, schema hash,
fingerprint) that later stages read instead of listing the folder again.

`storage.data_fingerprint` is the one definition of the data's fingerprint: the pipeline puts it in the ingest
stage's cache key (kon_ray/manifest.py), and ingest.json and MLflow (`data.fingerprint`) record the same value. The
Parquet discovery this stage uses (`find_files`, `read_metadata`) lives in kon_ray/storage.py, for every stage.
"""

from __future__ import annotations

import hashlib
import json
from typing import Dict, List, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kon_ray import storage
from kon_ray.context import INGEST_SUMMARY, RunContext
from kon_ray.errors import DataError
from kon_ray.storage import data_fingerprint, find_files, read_metadata
from kon_ray.synth.writer import generator_command

SUMMARY_FILE = INGEST_SUMMARY  # the stage's one output: rows, files, fingerprint (read by preprocess and tracking)


def type_matches(declared: str, actual: pa.DataType) -> bool:
    """Whether a Parquet column's arrow type satisfies a declared column type."""
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if declared == "int64":
        return pa.types.is_integer(actual)
    if declared == "float64":
        return pa.types.is_floating(actual)
    if declared == "string":
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if declared == "bool":
        return pa.types.is_boolean(actual)
    if declared == "date":
        return pa.types.is_date(actual) or pa.types.is_timestamp(actual)
    return False


def schema_problems(file: str, schema: pa.Schema, declared: Dict[str, str]) -> List[str]:
    """One line per mismatch between a file's schema and the declared columns (empty when they agree)."""
    problems = []
    present = {name: schema.field(name).type for name in schema.names}
    for column, kind in declared.items():
        if column not in present:
            problems.append(f"{file}: column {column!r} is missing (declared as {kind})")
        elif not type_matches(kind, present[column]):
            problems.append(f"{file}: column {column!r} has type {present[column]}, declared {kind}")
    for column in present:
        if column not in declared:
            problems.append(f"{file}: column {column!r} is not declared in the dataset's columns")
    return problems


def schema_hash(declared: Dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(declared.items())).encode()).hexdigest()[:16]


def check_unique_ids(path: str, files: Sequence[str], id_column: str) -> None:
    """Ids must be unique across all files; the id column alone is small enough to read on the driver."""
    ids = []
    for file in files:
        fs, fs_path = storage.filesystem(file)
        with fs.open_input_file(fs_path) as handle:
            ids.append(pq.read_table(handle, columns=[id_column]).column(0).to_numpy(zero_copy_only=False))
    values = np.concatenate(ids) if ids else np.array([])
    unique, counts = np.unique(values, return_counts=True)
    if unique.size < values.size:
        example = unique[counts > 1][0]
        raise DataError(f"{path}: column {id_column!r} has {values.size - unique.size} duplicate ids (e.g. {example})")


def check_footers(path: str, declared: Dict[str, str], fix: str | None = None) -> tuple[List[str], int]:
    """(files, rows) of the dataset at `path`, from the Parquet footers alone: the files exist and are Parquet, the
    declared columns are there with their types, there is a row. A DataError at the first problem (`fix`: what to
    run when there is no data at all). Cheap enough to run before Ray starts (kon_ray/run.py)."""
    files = find_files(path, "dataset.path", fix)
    total_rows = 0
    for file in files:
        schema, rows, _ = read_metadata(file)
        problems = schema_problems(file, schema, declared) if declared else []
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DataError(problems[0] + more)
        total_rows += rows
    if total_rows == 0:
        raise DataError(f"{path}: the dataset has no rows")
    return files, total_rows


def fix_command(dataset) -> str | None:
    """What to run when the dataset's data is not there: the generator's command for a dataset it knows."""

    command = generator_command(dataset)
    return f"generate it with: {command}" if command else None


def validate(path: str, declared: Dict[str, str], id_column: str, fix: str | None = None) -> dict:
    """Check the dataset at `path` and return its summary; raise DataError at the first problem (`fix`: what to
    run when there is no data at all)."""
    files, total_rows = check_footers(path, declared, fix)
    check_unique_ids(path, files, id_column)
    return {
        "path": path,
        "files": files,
        "rows": total_rows,
        "schema_hash": schema_hash(declared),
        "fingerprint": data_fingerprint(path),
    }


def run(ctx: RunContext) -> dict:
    dataset = ctx.config.dataset
    summary = validate(dataset.path, dict(dataset.columns), dataset.id_column, fix_command(dataset))
    storage.write_json(ctx.out(SUMMARY_FILE), summary)
    return {"rows": summary["rows"], "files": len(summary["files"])}

