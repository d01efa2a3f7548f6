"""Identifier columns of a standalone check's reference: skipped, with the reason, instead of compared.

An id (`customer_id`, a meter number) is unique per row, so its "distribution" in a new batch is new ids: its PSI
is large whenever the batches differ (2.96 on two samples of one distribution), and it raises the drift flag for
nothing. The pipeline leaves its declared id out; a standalone check on anyone's Parquet files has no declaration,
so it finds them: an integer or string column with a value in every reference row and no value twice, on a
reference of at least MIN_ROWS rows (below that a real feature's values are often all different by chance).

Reading is cheap and happens before Ray starts: each candidate column's first HEAD_ROWS rows only (a feature
repeats a value there almost always; a column unique in all rows is unique there too, so nothing is missed), then
the whole column only for the few still unique (ids). Not the whole first row group: in one file of one big row
group (pyarrow's default) that is every row, read and sorted on the driver before the check starts (17 of the
command's 31 CPU-s at 1M rows). A column the user
types with `drift.column_types.NAME=...` is analysed whatever its values.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kon_ray import storage

MIN_ROWS = 100
HEAD_ROWS = 65_536  # the rows each candidate is first tried on
REASON = ("identifier: unique in every one of the reference's {rows:,} rows, so new batches bring new values and"
          " its PSI measures only that; declare drift.column_types.{name}=numeric (or categorical) to compare it")


def is_candidate(arrow_type: pa.DataType) -> bool:
    """Integer or string columns (dictionary-encoded strings too); floats are measurements, not ids."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_integer(arrow_type) or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def all_distinct(column: pa.ChunkedArray | pa.Array) -> bool:
    """No null and no value twice."""
    if column.null_count:
        return False
    values = column.to_numpy(zero_copy_only=False)
    return len(np.unique(values)) == len(values)


def _head(handle: pq.ParquetFile, columns: List[str]) -> pa.Table | None:
    """The first HEAD_ROWS rows of `columns` (pages decoded only that far), or None for a file without rows."""
    if not handle.metadata.num_row_groups:
        return None
    batch = next(handle.iter_batches(batch_size=HEAD_ROWS, row_groups=[0], columns=columns), None)
    return None if batch is None else pa.Table.from_batches([batch])


def identifier_columns(files: Sequence[str], columns: Iterable[str], typed: Iterable[str] = ()) -> Dict[str, str]:
    """{column: reason} for the `columns` of the reference `files` that are identifiers (module docstring); the
    columns in `typed` (drift.column_types) are never identifiers."""

    opened, handles = [], []
    try:
        for file in files:
            fs, path = storage.filesystem(file)
            opened.append(fs.open_input_file(path))
            handles.append(pq.ParquetFile(opened[-1]))
        rows = sum(handle.metadata.num_rows for handle in handles)
        if rows < MIN_ROWS:
            return {}
        first = next(handle for handle in handles if handle.metadata.num_rows)
        schema = first.schema_arrow
        never = set(typed)
        candidates = [name for name in columns if name in schema.names and name not in never
                      and is_candidate(schema.field(name).type)]
        if not candidates:
            return {}
        head = _head(first, candidates)
        survivors: List[str] = [name for name in candidates if head is None or all_distinct(head.column(name))]
        found = {}
        for name in survivors:
            whole = pa.chunked_array([chunk for handle in handles for chunk in
                                      handle.read(columns=[name]).column(0).chunks])
            if all_distinct(whole):
                found[name] = REASON.format(rows=rows, name=name)
        return found
    finally:
        for stream in opened:
            stream.close()
