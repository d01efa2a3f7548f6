"""Parquet into the estimator: the inputs' checks (each a one-line DataError naming the file and the key), and the
passes over the rows, row group by row group in batches, in process (no Ray): the reference twice (the
calibration's counts, then its chunks for the alarm bands), the current window once (overall, per chunk, per
segment). Row positions count over the files in order, so a chunk of N rows is the same rows on any layout."""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kon_ray import storage
from kon_ray.errors import DataError
from kon_ray.ingest import find_files, read_metadata
from kon_ray.performance.config import PerformanceConfig
from kon_ray.performance.estimator import SLICE, Calibration, Partial, ReferenceBins, Terms, predicted

WHOLE = "all"  # the key of the one chunk when the window is not chunked


@dataclass(frozen=True)
class Dataset:
    key: str  # the command's key: reference or current
    path: str
    files: Tuple[str, ...]
    schemas: Tuple[pa.Schema, ...]
    rows: int


@dataclass(frozen=True)
class Columns:
    label: str
    prefix: str
    probabilities: Tuple[str, ...]
    classes: Tuple[str, ...]  # the suffixes, in the columns' order


@dataclass
class Window:
    """A pass's partials: the whole window, each chunk (by key, in first-seen order), each segment."""

    overall: Partial
    chunks: Dict[Any, Partial] = field(default_factory=dict)
    segments: Dict[Tuple[str, Any], Partial] = field(default_factory=dict)

    def merge(self, other: "Window") -> "Window":
        """Exact and order-free, as Partial.merge; chunks keep first-seen order (self's, then other's new ones)."""
        def both(a: Dict[Any, Partial], b: Dict[Any, Partial]) -> Dict[Any, Partial]:
            return {key: a[key].merge(b[key]) if key in a and key in b else a.get(key) or b[key]
                    for key in dict.fromkeys([*a, *b])}

        return Window(self.overall.merge(other.overall), both(self.chunks, other.chunks),
                      both(self.segments, other.segments))


def open_dataset(path: str, key: str) -> Dataset:
    """The Parquet files at `path` with their footers; a DataError naming `key` when there is none, one is not
    Parquet, or they hold no row (an empty window)."""
    files = find_files(path, key)
    schemas, rows = [], 0
    for file in files:
        try:
            schema, count, _ = read_metadata(file)
        except DataError as exc:
            raise DataError(f"{exc} ({key})") from None
        schemas.append(schema)
        rows += count
    if rows == 0:
        raise DataError(f"{path}: no rows, an empty window ({key})")
    return Dataset(key, path, tuple(files), tuple(schemas), rows)


def resolve_columns(reference: Dataset, current: Dataset, cfg: PerformanceConfig) -> Columns:
    """The probability columns and classes from the reference's first file, checked in every file of both sides;
    the label column in every reference file; chunk and segment columns in every current file."""
    first = reference.schemas[0]
    probabilities = tuple(name for name in first.names if name.startswith(cfg.probability_prefix)
                          and len(name) > len(cfg.probability_prefix))
    if not probabilities:
        raise DataError(f"{reference.files[0]}: no column starts with performance.probability_prefix"
                        f" {cfg.probability_prefix!r} (reference)")
    columns = Columns(cfg.label_column, cfg.probability_prefix, probabilities,
                      tuple(name[len(cfg.probability_prefix):] for name in probabilities))
    for data in (reference, current):
        for file, schema in zip(data.files, data.schemas):
            lacking = [name for name in probabilities if name not in schema.names]
            if lacking:
                raise DataError(f"{file}: probability column {lacking[0]!r} is missing ({data.key})")
    for file, schema in zip(reference.files, reference.schemas):
        if cfg.label_column not in schema.names:
            raise DataError(f"{file}: no label column {cfg.label_column!r} (performance.label_column) in the"
                            " reference, which must be labelled (reference)")
    wanted = [(name, key) for name, key in [(cfg.chunk_column, "performance.chunk_column")] if name]
    wanted += [(name, "performance.segment_columns") for name in cfg.segment_columns]
    for file, schema in zip(current.files, current.schemas):
        for name, key in wanted:
            if name not in schema.names:
                raise DataError(f"{file}: no column {name!r} ({key}) (current)")
    return columns


def batches(data: Dataset, columns: Sequence[str]) -> Iterator[Tuple[str, int, int, pa.Table]]:
    """(file, first row in the file, first row over all files, batch) for every batch of every row group, in
    order; only `columns` that the file has."""
    position = 0
    for file, schema in zip(data.files, data.schemas):
        cols = [name for name in dict.fromkeys(columns) if name in schema.names]
        fs, path = storage.filesystem(file)
        with fs.open_input_file(path) as handle:
            reader = pq.ParquetFile(handle)
            in_file = 0
            for group in range(reader.metadata.num_row_groups):
                for batch in reader.iter_batches(batch_size=SLICE, row_groups=[group], columns=cols):
                    table = pa.Table.from_batches([batch])
                    yield file, in_file, position, table
                    in_file += table.num_rows
                    position += table.num_rows


def probabilities(table: pa.Table, columns: Columns, tolerance: float, where: Callable[[int], str]) -> np.ndarray:
    """The batch's probabilities (n, K); a DataError for a missing, negative or > 1 value, or a row whose
    probabilities do not sum to 1 within `tolerance`."""
    values = np.column_stack([
        table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False) for name in columns.probabilities])
    bad = np.isnan(values).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: a missing probability")
    sums = values.sum(axis=1)
    bad = np.abs(sums - 1.0) > tolerance
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: the probabilities ({columns.prefix}*) sum to {sums[row]:.6g}, not 1 within"
                        f" {tolerance:g}")
    bad = ((values < 0) | (values > 1)).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: a probability outside [0, 1]")
    return values


def label_indices(table: pa.Table, columns: Columns, where: Callable[[int], str],
                  required: bool) -> Optional[np.ndarray]:
    """Each row's class index (-1: no label), labels matched to the classes as text; None when the batch has no
    label column. A label with no probability column is a DataError; so is a missing one where `required`."""
    if columns.label not in table.column_names:
        return None
    encoded = pc.dictionary_encode(table.column(columns.label).cast(pa.string())).combine_chunks()
    names = encoded.dictionary.to_pylist()
    lookup = np.array([columns.classes.index(name) if name in columns.classes else -2 for name in names] + [-1],
                      dtype=np.int64)
    codes = encoded.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)
    labels = lookup[codes]
    unknown = labels == -2
    if unknown.any():
        row = int(np.argmax(unknown))
        name = names[codes[row]]
        raise DataError(f"{where(row)}: class {name!r} of {columns.label} has no probability column"
                        f" {columns.prefix}{name}")
    if required and (labels < 0).any():
        row = int(np.argmax(labels < 0))
        raise DataError(f"{where(row)}: no label in {columns.label}; every reference row needs one")
    return labels


def _where(data: Dataset, file: str, first: int) -> Callable[[int], str]:
    return lambda row: f"{file}, row {first + row} ({data.key})"


def fit_reference(data: Dataset, columns: Columns, cfg: PerformanceConfig) -> ReferenceBins:
    """The reference's calibration counts (pass 1), every row checked."""
    counts = ReferenceBins(len(columns.classes), cfg.bins)
    for file, first, _, table in batches(data, [*columns.probabilities, columns.label]):
        where = _where(data, file, first)
        probs = probabilities(table, columns, cfg.sum_tolerance, where)
        labels = label_indices(table, columns, where, required=True)
        assert labels is not None  # resolve_columns checked the label column
        counts.add(probs, labels)
    return counts


def json_key(value: Any) -> Any:
    """A chunk or segment value as JSON can hold it (dates as ISO text)."""
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and value != value:
        return None
    return value


def groups(values: pa.ChunkedArray) -> List[Tuple[Any, np.ndarray]]:
    """(value, row mask) for each value of a batch's column (None: missing)."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    names = encoded.dictionary.to_pylist()
    codes = encoded.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)
    return [(json_key(names[code]) if code < len(names) else None, codes == code) for code in np.unique(codes)]


def scan(data: Dataset, columns: Columns, cfg: PerformanceConfig, calibration: Calibration, *,
         chunk_rows: Optional[int] = None, chunk_column: Optional[str] = None,
         segment_columns: Sequence[str] = (), labels_required: bool = False) -> Window:
    """One pass over `data`: the partials of the whole window, of its chunks (by `chunk_column`'s values, or
    `chunk_rows` rows by position; neither: one chunk, WHOLE) and of each value of each segment column."""
    k = len(columns.classes)
    window = Window(Partial(k))
    extra = [name for name in [chunk_column, *segment_columns] if name]
    for file, first, position, table in batches(data, [*columns.probabilities, columns.label, *extra]):
        where = _where(data, file, first)
        probs = probabilities(table, columns, cfg.sum_tolerance, where)
        labels = label_indices(table, columns, where, required=labels_required)
        if chunk_column:
            chunks = groups(table.column(chunk_column))
        elif chunk_rows:
            chunks = positional_chunks(position, table.num_rows, chunk_rows)
        else:
            chunks = [(WHOLE, np.ones(table.num_rows, dtype=bool))]
        add_rows(window, calibration, probs, labels, chunks,
                 [((name, key), mask) for name in segment_columns for key, mask in groups(table.column(name))])
    return window


def positional_chunks(position: int, rows: int, chunk_rows: int) -> List[Tuple[Any, np.ndarray]]:
    """(chunk index, row mask) of a batch whose first row is `position` over the window, chunks of `chunk_rows`."""
    index = (position + np.arange(rows)) // chunk_rows
    return [(int(i), index == i) for i in np.unique(index)]


def add_rows(window: Window, calibration: Calibration, probs: np.ndarray, labels: Optional[np.ndarray],
             chunks: Sequence[Tuple[Any, np.ndarray]], segments: Sequence[Tuple[Tuple[str, Any], np.ndarray]]) -> None:
    """Count one batch into `window`: probs (n, K) raw, labels (n,) class index or -1 (None: no label column),
    each chunk's and each segment's rows as (key, row mask). The one place a batch becomes partials (the standalone
    command's passes and InferenceReporting's units). Each slice's fixed-point terms are computed once and counted
    into the whole window, its chunks and its segments."""
    k = window.overall.classes
    targets = [(window.chunks.setdefault(key, Partial(k)), mask) for key, mask in chunks]  # first-seen order
    targets += [(window.segments.setdefault(segment, Partial(k)), mask) for segment, mask in segments]
    for start in range(0, len(probs), SLICE):
        part = slice(start, start + SLICE)
        raw = probs[part]
        pred = predicted(raw)
        terms = Terms.of(calibration.apply(raw))
        unseen = calibration.unseen(raw, pred)
        lab = None if labels is None else labels[part]
        window.overall.add_terms(terms, pred, unseen, lab)
        for target, mask in targets:
            rows = mask[part]
            if rows.all():
                target.add_terms(terms, pred, unseen, lab)
            elif rows.any():
                target.add_terms(terms.select(rows), pred[rows], unseen[rows], None if lab is None else lab[rows])


def ordered(keys: Sequence[Any]) -> List[Any]:
    """Chunk or segment keys in order: sorted, missing last (as text where the values do not compare)."""
    present = [key for key in keys if key is not None]
    try:
        out = sorted(present)
    except TypeError:
        out = sorted(present, key=str)
    return out + ([None] if len(present) < len(keys) else [])
