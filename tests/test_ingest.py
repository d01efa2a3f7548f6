"""Ingest validation: each malformed input is a DataError naming the file and column."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray.errors import DataError
from kon_ray.ingest import schema_problems, type_matches, validate
from kon_ray.storage import data_fingerprint

DECLARED = {"customer_id": "int64", "record_date": "date", "tariff_type": "string", "kwh": "float64", "vip": "bool"}


def _table(n: int = 4, start_id: int = 1, **replace) -> pa.Table:
    columns = {
        "customer_id": pa.array(range(start_id, start_id + n), pa.int64()),
        "record_date": pa.array([dt.date(2025, 1, 1)] * n, pa.date32()),
        "tariff_type": pa.array(["residencial"] * n, pa.string()),
        "kwh": pa.array([1.5] * n, pa.float64()),
        "vip": pa.array([False] * n, pa.bool_()),
    }
    columns.update(replace)
    return pa.table({k: v for k, v in columns.items() if v is not None})


def _write(folder: Path, *tables: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, table in enumerate(tables):
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    return folder


def test_a_good_dataset_passes_with_row_count_and_stable_fingerprint(tmp_path):
    folder = _write(tmp_path / "ds", _table(4), _table(3, start_id=10))
    first = validate(str(folder), DECLARED, "customer_id")
    assert first["rows"] == 7 and len(first["files"]) == 2
    assert validate(str(folder), DECLARED, "customer_id")["fingerprint"] == first["fingerprint"]


def test_fingerprint_changes_with_the_data(tmp_path):
    folder = _write(tmp_path / "ds", _table(4))
    before = validate(str(folder), DECLARED, "customer_id")["fingerprint"]
    _write(folder, _table(5))
    assert validate(str(folder), DECLARED, "customer_id")["fingerprint"] != before


def test_ingest_json_records_the_fingerprint_the_cache_key_uses(tmp_path):
    """One fingerprint: what validate() reports (ingest.json, MLflow's data.fingerprint) is data_fingerprint(path),
    the value kon_ray.pipeline.plan puts in the ingest stage's key."""
    folder = _write(tmp_path / "ds", _table(4), _table(3, start_id=10))
    assert validate(str(folder), DECLARED, "customer_id")["fingerprint"] == data_fingerprint(str(folder))


def test_the_fingerprint_reads_no_data_and_sees_a_rewrite_of_the_same_size(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    part = folder / "part-00000.parquet"
    part.write_bytes(b"not parquet at all")  # listed, never opened: the fingerprint is the file listing alone
    before = data_fingerprint(str(folder))
    part.write_bytes(b"NOT PARQUET AT ALL")  # same name and size, new contents: only the mtime tells
    stat = part.stat()
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # never within the clock's resolution
    assert data_fingerprint(str(folder)) != before
    # the definition, computed by hand from os.stat: the path, then each file's name, size and mtime in nanoseconds
    stat = part.stat()
    by_hand = hashlib.sha256(str(folder).encode() + f"{part}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    assert data_fingerprint(str(folder)) == by_hand.hexdigest()[:16]


@pytest.mark.parametrize(
    "declared, arrow_type, ok",
    [
        ("int64", pa.int32(), True),
        ("int64", pa.float64(), False),
        ("float64", pa.float32(), True),
        ("float64", pa.string(), False),
        ("string", pa.large_string(), True),
        ("string", pa.dictionary(pa.int32(), pa.string()), True),
        ("bool", pa.int8(), False),
        ("date", pa.timestamp("ms"), True),
        ("date", pa.string(), False),
    ],
)
def test_type_matching(declared, arrow_type, ok):
    assert type_matches(declared, arrow_type) is ok


def test_schema_problems_lists_each_mismatch():
    schema = pa.schema([("customer_id", pa.string()), ("extra", pa.int64())])
    problems = schema_problems("f.parquet", schema, {"customer_id": "int64", "kwh": "float64"})
    assert problems == [
        "f.parquet: column 'customer_id' has type string, declared int64",
        "f.parquet: column 'kwh' is missing (declared as float64)",
        "f.parquet: column 'extra' is not declared in the dataset's columns",
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: _write(d, _table(kwh=None)), r"part-00000.parquet: column 'kwh' is missing"),
        (lambda d: _write(d, _table(extra=pa.array([1, 2, 3, 4]))), r"column 'extra' is not declared"),
        (lambda d: _write(d, _table(kwh=pa.array(["a"] * 4))), r"column 'kwh' has type string, declared float64"),
        (lambda d: _write(d, _table(record_date=pa.array(["2025-13-45"] * 4))),
         r"column 'record_date' has type string"),
        (lambda d: _write(d, _table(0)), r"has no rows"),
        (lambda d: _write(d, _table(4), _table(2, start_id=3)), r"column 'customer_id' has 2 duplicate ids \(e.g. 3\)"),
        (lambda d: (d.mkdir(), (d / "part-0.parquet").write_text("not parquet")), r"part-0.parquet: not a readable"),
        (lambda d: d.mkdir(), r"no .parquet files found"),
        (lambda d: None, r"no such file or folder"),
    ],
    ids=["missing-column", "extra-column", "wrong-type", "unparseable-dates", "empty", "duplicate-ids",
         "not-parquet", "empty-folder", "no-path"],
)
def test_bad_data_is_one_clear_error(tmp_path, make, message):
    folder = tmp_path / "ds"
    make(folder)
    with pytest.raises(DataError, match=message) as info:
        validate(str(folder), DECLARED, "customer_id")
    assert "\n" not in str(info.value)


def test_truncated_parquet_names_the_file(tmp_path):
    folder = _write(tmp_path / "ds", _table(4), _table(4, start_id=100))
    part = folder / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(DataError, match=r"part-00001.parquet: not a readable Parquet file"):
        validate(str(folder), DECLARED, "customer_id")
