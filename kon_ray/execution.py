"""The execution layer: the one module that decides where and how many pieces of data work run at once.

A stage describes *what* to compute per work unit (a pure function over an Arrow table) and how the partials
merge; this module decides *where* (Ray tasks, or this process when Ray is not running) and *how many at once*.

    plan   Parquet footers only -> work units. A unit is a list of row ranges (file, row group, first row, end)
           and, for per-column work, one group of columns. Units are sized from the cluster's CPUs and the data's
           uncompressed size, so one file with one huge row group spreads over every core like a folder of small
           files: per-column work (drift counts, the fit pass) splits its columns, per-row work splits the row
           group into row ranges.
    run    map(unit -> small partial) as plain Ray tasks, at most a few per CPU in flight; partials merge on the
           driver as they arrive, in unit order, so the result never depends on which task finished first.
    errors a KonError raised inside a task (or a Ray Train worker) comes back as itself, one line (`user_errors`);
           an interruption (Ctrl-C) comes back as KeyboardInterrupt, however Ray wrapped it, and the tasks still
           running for the pass are cancelled (`cancel_on_interrupt`, `TaskGroup`).
    spill  what Ray spilled from its object store to disk (`spilled_bytes`), which the pipeline reports per stage.
    data   the only Ray Data calls in kon_ray: a split read as a streamed Ray Dataset for Ray Train
           (`read_dataset`), and a Ray Dataset a caller hands the drift check (`is_dataset`, `dataset_schema`,
           `reduce_dataset`, `sample_dataset`...).

Parquet has no API to read part of a row group: a row range alone is read by decoding the row group's batches up to
the range's end and keeping the range. A row group is therefore split into row ranges only as far as parallelism or
memory require, never more; and when several units each read part of one row group (one file with one big row group:
per-row work on every core), the row group is read once instead (`shared_reads`): by column groups, one task per CPU,
into Ray's object store, and each unit slices its rows from those columns (no decoding is paid twice).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.parquet as pq

from kon_ray import progress, storage
from kon_ray.errors import KonError

# A unit smaller than this is not worth a task (task start and footer read cost ~ms; 16k rows x 60 columns ~ 8 MB).
MIN_UNIT_ROWS = 16_384
# A unit's uncompressed columns stay below this, so a task's working set (Arrow + pandas/numpy copies, ~3x) fits
# in a worker's share of memory on the smallest machine we run on (24 GiB, 3 workers).
MAX_UNIT_BYTES = 512 * 1024**2
# Units per CPU when whole row groups or column groups allow it: enough that one slow unit does not leave a core
# idle at the end of a pass, few enough that per-task costs stay small.
UNITS_PER_CPU = 2
# Work units go to every node, not first to the node with the most free CPUs (Ray's default packs a few tasks onto
# one node; on several nodes a pass of 2-4 units would then run on one).
SPREAD = "SPREAD"
# At most this many tasks per CPU are submitted ahead of the results being collected (bounds driver memory).
IN_FLIGHT_PER_CPU = 2
# A row group that several units read parts of is read once (`shared_reads`) when its columns, uncompressed, are at
# most this big (a quarter of the default local object store, cluster.object_store_gb = 4); a bigger one (written with
# row_group_size above pyarrow's 1Mi-row default) is decoded by each unit up to its range's end, as before.
SHARED_MAX_BYTES = 1024**3


@dataclass(frozen=True)
class RowRange:
    """Rows [start, stop) of one row group of one Parquet file."""

    file: str
    row_group: int
    start: int
    stop: int
    group_rows: int  # rows in the whole row group (start == 0 and stop == group_rows: the whole group)
    first_row: int = 0  # the position of row `start` in the whole input (files in order): the same on any layout

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class WorkUnit:
    """What one task reads: some row ranges, and the columns of its column group (None: the pass's columns)."""

    index: int
    ranges: Tuple[RowRange, ...]
    columns: Optional[Tuple[str, ...]] = None

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.ranges)


@dataclass(frozen=True)
class RowGroupInfo:
    file: str
    index: int
    rows: int
    column_bytes: Dict[str, int]  # uncompressed bytes per top-level column


def cpus() -> int:
    """CPUs the work may use: the connected Ray cluster's, else this machine's cores."""
    import ray

    if ray.is_initialized():
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return max(1, os.cpu_count() or 1)


def cpu_nodes() -> int:
    """Alive nodes with CPUs in the connected Ray cluster (a head without CPUs does not count); 1 without Ray."""
    import ray

    if not ray.is_initialized():
        return 1
    return max(1, sum(1 for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0))


def row_groups(files: Sequence[str]) -> List[RowGroupInfo]:
    """Every row group of `files`, from their footers (no data is read)."""
    out = []
    for file in files:
        fs, path = storage.filesystem(file)
        with fs.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            sizes: Dict[str, int] = {}
            for c in range(group.num_columns):
                column = group.column(c)
                top = column.path_in_schema.split(".", 1)[0]
                sizes[top] = sizes.get(top, 0) + int(column.total_uncompressed_size)
            out.append(RowGroupInfo(file, g, group.num_rows, sizes))
    return out


def plan(files: Sequence[str], columns: Sequence[str], *, per_column: bool = False, workers: Optional[int] = None,
         min_rows: int = MIN_UNIT_ROWS, max_bytes: int = MAX_UNIT_BYTES,
         groups: Optional[List[RowGroupInfo]] = None) -> List[WorkUnit]:
    """Cut a pass over `columns` of `files` into work units, from the Parquet footers alone.

    `per_column`: the pass's function works column by column (its partials merge across column groups), so a
    file with too few row groups is spread by columns before any row group is cut into row ranges.
    """
    columns = list(columns)
    groups = row_groups(files) if groups is None else groups
    groups = [g for g in groups if g.rows > 0]
    workers = workers or cpus()
    if not groups:
        return []
    total_rows = sum(g.rows for g in groups)
    wanted = max(1, UNITS_PER_CPU * workers)
    row_bytes = max(1.0, sum(_bytes(g, columns) for g in groups) / total_rows)

    column_groups: List[Optional[Tuple[str, ...]]] = [None]
    if per_column and len(columns) > 1:
        # columns make up for the row groups the data lacks, and keep a unit's bytes under max_bytes
        by_parallelism = math.ceil(wanted / len(groups))
        by_memory = math.ceil(max(g.rows for g in groups) * row_bytes / max_bytes)
        count = max(1, min(len(columns), max(by_parallelism, by_memory)))
        if count > 1:
            column_groups = [tuple(part) for part in _split_evenly(columns, count)]
    unit_bytes_per_row = row_bytes / len(column_groups)

    # rows per unit: enough units for every CPU, none above the memory bound, none below min_rows
    units_per_column_group = max(1, math.ceil(wanted / len(column_groups)))
    target = max(min_rows, math.ceil(total_rows / units_per_column_group))
    target = min(target, max(1, int(max_bytes / unit_bytes_per_row)))
    # cut a row group into row ranges only when parallelism (one unit per CPU at least) or memory needs it
    must_cut = total_rows / max(1, math.ceil(workers / len(column_groups)))
    cut_rows = min(max(target, math.ceil(must_cut)), max(1, int(max_bytes / unit_bytes_per_row)))
    cut_rows = max(cut_rows, min(min_rows, max(g.rows for g in groups)))

    row_units: List[List[RowRange]] = []
    current: List[RowRange] = []
    current_rows = 0
    position = 0
    for group in groups:
        pieces = max(1, math.ceil(group.rows / cut_rows)) if group.rows > cut_rows else 1
        bounds = [round(i * group.rows / pieces) for i in range(pieces + 1)]
        for start, stop in zip(bounds, bounds[1:]):
            piece = RowRange(group.file, group.index, start, stop, group.rows, position + start)
            if current and current_rows + piece.rows > target:
                row_units.append(current)
                current, current_rows = [], 0
            current.append(piece)
            current_rows += piece.rows
        position += group.rows
    if current:
        row_units.append(current)

    units: List[WorkUnit] = []
    for cols in column_groups:
        for ranges in row_units:
            units.append(WorkUnit(len(units), tuple(ranges), cols))
    return units


def plan_whole_columns(files: Sequence[str], columns: Sequence[str], *, workers: Optional[int] = None,
                       max_bytes: int = MAX_UNIT_BYTES,
                       groups: Optional[List[RowGroupInfo]] = None) -> Optional[List[WorkUnit]]:
    """Per-column work that needs every row of a column at once (e.g. a sample placed by row position, then
    counts on edges from it, in one read): one unit per column group, each over all row ranges in input order.

    Enough column groups for every CPU (UNITS_PER_CPU each) and none above `max_bytes`; None when even one
    column's rows exceed `max_bytes` (the caller then makes several passes over `plan`'s units).
    """
    columns = list(columns)
    groups = row_groups(files) if groups is None else groups
    groups = [g for g in groups if g.rows > 0]
    if not groups or not columns:
        return []
    sizes = {c: sum(g.column_bytes.get(c, 0) for g in groups) for c in columns}
    if max(sizes.values()) > max_bytes:
        return None
    workers = workers or cpus()
    by_memory = math.ceil(sum(sizes.values()) / max_bytes)
    count = min(len(columns), max(UNITS_PER_CPU * workers, by_memory))
    ranges, position = [], 0
    for group in groups:
        ranges.append(RowRange(group.file, group.index, 0, group.rows, group.rows, position))
        position += group.rows
    parts = _split_by_size(columns, sizes, count, max_bytes)
    return [WorkUnit(i, tuple(ranges), tuple(part)) for i, part in enumerate(parts)]


def _split_by_size(items: Sequence[str], sizes: Dict[str, int], count: int, max_bytes: int) -> List[List[str]]:
    """`items` in order, cut into about `count` runs of about equal total size, none above max_bytes."""
    target = min(max_bytes, max(1, math.ceil(sum(sizes.values()) / max(1, count))))
    parts: List[List[str]] = [[]]
    total = 0
    for item in items:
        if parts[-1] and total + sizes[item] > target:
            parts.append([])
            total = 0
        parts[-1].append(item)
        total += sizes[item]
    return parts


def _bytes(group: RowGroupInfo, columns: Sequence[str]) -> int:
    return sum(group.column_bytes.get(c, 0) for c in columns) or sum(group.column_bytes.values())


def _split_evenly(items: Sequence[str], count: int) -> List[List[str]]:
    bounds = [round(i * len(items) / count) for i in range(count + 1)]
    return [list(items[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]


# --- reading -------------------------------------------------------------------------------------------------


def read_range(piece: RowRange, columns: Optional[Sequence[str]]) -> pa.Table:
    """The rows of one row range. A whole row group is read directly; a part of one by decoding its batches up to
    the range's end (Parquet cannot seek to a row inside a row group)."""
    fs, path = storage.filesystem(piece.file)
    cols = list(columns) if columns is not None else None
    with fs.open_input_file(path) as handle:
        reader = pq.ParquetFile(handle)
        if piece.start == 0 and piece.stop == piece.group_rows:
            return reader.read_row_group(piece.row_group, columns=cols)
        size = math.gcd(piece.start, piece.rows) or piece.rows  # batches that fall exactly on the range's edges
        size = max(size, min(piece.rows, 8192))
        batches, position = [], 0
        for batch in reader.iter_batches(batch_size=size, row_groups=[piece.row_group], columns=cols):
            end = position + batch.num_rows
            if end > piece.start:
                batches.append(
                    batch.slice(max(0, piece.start - position), min(end, piece.stop) - max(position, piece.start))
                )
            position = end
            if position >= piece.stop:
                break
    if not batches:
        return reader.schema_arrow.empty_table() if cols is None else reader.schema_arrow.empty_table().select(cols)
    return pa.Table.from_batches(batches)


def read_unit(unit: WorkUnit, columns: Optional[Sequence[str]] = None,
              shared: Optional[Mapping[int, Sequence[pa.Table]]] = None) -> pa.Table:
    """All rows of a unit, its column group (or `columns`) only; row ranges of several files are concatenated
    with their types unified (a column null in one file and typed in another). `shared`: for some of the unit's
    ranges (by index), their whole row group already read, as column parts (`shared_reads`): sliced, not read."""
    cols = list(unit.columns) if unit.columns is not None else (list(columns) if columns is not None else None)
    tables = [slice_shared(shared[i], piece, cols) if shared and i in shared else read_range(piece, cols)
              for i, piece in enumerate(unit.ranges)]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


@dataclass(frozen=True)
class SharedRead:
    """A row group several units read parts of, read once: its columns `parts` (one read each, one per CPU)."""

    file: str
    row_group: int
    parts: Tuple[Tuple[str, ...], ...]
    last_unit: int  # the last unit (by index) that reads it: after that unit is submitted, the read is dropped


def _unit_columns(unit: WorkUnit, columns: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    if unit.columns is not None:
        return tuple(unit.columns)
    return tuple(columns) if columns is not None else None


def _shared_key(piece: RowRange, cols: Optional[Tuple[str, ...]]) -> Tuple[str, int, Optional[Tuple[str, ...]]]:
    return piece.file, piece.row_group, cols


def shared_reads(units: Sequence[WorkUnit], columns: Optional[Sequence[str]] = None, *,
                 workers: Optional[int] = None,
                 max_bytes: int = SHARED_MAX_BYTES) -> Dict[Tuple[str, int, Optional[Tuple[str, ...]]], SharedRead]:
    """The row groups that two or more units each read a part of (same columns), at most `max_bytes` of those
    columns uncompressed: each is read once, in column parts of about equal size (one per CPU, so the decoding
    spreads over the cores as the units' work does), and the units slice their ranges from it."""
    users: Dict[Tuple[str, int, Optional[Tuple[str, ...]]], List[int]] = {}
    for unit in units:
        cols = _unit_columns(unit, columns)
        for piece in unit.ranges:
            if piece.start == 0 and piece.stop == piece.group_rows:
                continue
            users.setdefault(_shared_key(piece, cols), []).append(unit.index)
    out = {}
    footers: Dict[str, List[RowGroupInfo]] = {}
    workers = workers or cpus()
    for key, readers in users.items():
        if len(set(readers)) < 2:
            continue
        file, index, cols = key
        if file not in footers:
            footers[file] = row_groups([file])
        group = footers[file][index]
        names = list(cols) if cols is not None else list(group.column_bytes)
        sizes = {c: group.column_bytes.get(c, 0) for c in names}
        if sum(sizes.values()) > max_bytes:
            continue
        count = max(1, min(len(names), workers))
        parts = _split_by_size(names, sizes, count, max(1, sum(sizes.values())))
        out[key] = SharedRead(file, index, tuple(tuple(p) for p in parts if p), max(readers))
    return out


def read_columns(file: str, row_group: int, columns: Sequence[str]) -> pa.Table:
    """Some columns of one whole row group (a part of a shared read)."""
    fs, path = storage.filesystem(file)
    with fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle).read_row_group(row_group, columns=list(columns))


def slice_shared(parts: Sequence[pa.Table], piece: RowRange, cols: Optional[Sequence[str]]) -> pa.Table:
    """The rows of `piece` from its whole row group read in column parts, columns in `cols` order (all: the file's)."""
    fields: Dict[str, pa.Field] = {}
    arrays: Dict[str, pa.ChunkedArray] = {}
    for part in parts:
        for field, column in zip(part.schema, part.columns):
            fields[field.name] = field
            arrays[field.name] = column.slice(piece.start, piece.rows)
    names = list(cols) if cols is not None else list(arrays)
    schema = pa.schema([fields[c] for c in names], metadata=parts[0].schema.metadata if parts else None)
    return pa.Table.from_arrays([arrays[c] for c in names], schema=schema)


# --- running -------------------------------------------------------------------------------------------------


def _task(body: Callable[..., Any], name: str, num_cpus: float = 1, retries: int = 3):
    """The Ray task every pass submits: `num_cpus` each, spread over the nodes, run again `retries` times when its
    worker dies (never for an exception raised by the work itself)."""
    import ray

    return ray.remote(body).options(num_cpus=num_cpus, max_retries=retries, scheduling_strategy=SPREAD, name=name)


def _name(fn: Callable[..., Any]) -> str:
    """A task's name in Ray's dashboard and process titles: the stage function's (also through functools.partial)."""
    return str(getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "task"))


def _run_unit(fn: Callable[..., Any], unit: WorkUnit, columns: Optional[Sequence[str]], kwargs: Dict[str, Any],
              layout: Tuple[Tuple[int, int, int], ...] = (), *parts: pa.Table):
    """`fn` on the unit's rows. `layout`: (range index, first, end) per range whose row group was read once, its
    column parts being `parts[first:end]` (Ray passes them resolved, from its object store without a copy)."""
    if not layout:
        return fn(read_unit(unit, columns), unit, **kwargs)
    shared = {i: parts[a:b] for i, a, b in layout}
    return fn(read_unit(unit, columns, shared), unit, **kwargs)


@progress.watch_units  # units done, rows/s and what is left, on the terminal (kon_ray/progress.py)
def map_units(fn: Callable[..., Any], units: Sequence[WorkUnit], *, columns: Optional[Sequence[str]] = None,
              kwargs: Optional[Dict[str, Any]] = None, num_cpus: float = 1,
              retries: int = 3, name: Optional[str] = None) -> Iterator[Any]:
    """`fn(table, unit, **kwargs)` for every unit, yielded in unit order.

    With Ray running, each unit is one Ray task (`num_cpus` each; at most IN_FLIGHT_PER_CPU per CPU submitted
    ahead, so results never pile up on the driver); a task whose worker dies is retried `retries` times, an
    exception raised by `fn` is not (it would fail the same way). Without Ray, the units run here one by one:
    the same answers, which is how the pure tests run a stage's pass.
    """
    import ray

    kwargs = dict(kwargs or {})
    shared = shared_reads(units, columns)
    if not ray.is_initialized():
        cache: Dict[Any, List[pa.Table]] = {}  # the shared row groups being sliced, read once each here too
        for unit in units:
            cols = _unit_columns(unit, columns)
            layout, parts = _shared_layout(unit, cols, shared, cache, lambda r: [
                read_columns(r.file, r.row_group, p) for p in r.parts])
            yield _run_unit(fn, unit, columns, kwargs, layout, *parts)
            _drop_finished(unit, cache, shared)
        return
    remote = _task(_run_unit, name or _name(fn), num_cpus, retries)
    reader = _task(read_columns, f"{name or _name(fn)}_read", 1, retries)
    fn_ref, kwargs_ref = ray.put(fn), ray.put(kwargs)
    window = max(1, int(IN_FLIGHT_PER_CPU * cpus() / max(num_cpus, 1e-3)))
    pending: List[Any] = []
    reads: Dict[Any, List[Any]] = {}
    with cancel_on_interrupt(pending), user_errors():
        for unit in units:
            cols = _unit_columns(unit, columns)
            layout, parts = _shared_layout(unit, cols, shared, reads, lambda r: [
                reader.remote(r.file, r.row_group, p) for p in r.parts])
            pending.append(remote.remote(fn_ref, unit, columns, kwargs_ref, layout, *parts))
            _drop_finished(unit, reads, shared)  # the pending tasks hold the reads they need
            if len(pending) >= window:
                yield ray.get(pending.pop(0))
        while pending:
            yield ray.get(pending.pop(0))


def _shared_layout(unit: WorkUnit, cols: Optional[Tuple[str, ...]], shared: Dict[Any, SharedRead],
                   held: Dict[Any, List[Any]], read: Callable[[SharedRead], List[Any]]):
    """The unit's `_run_unit` layout and parts for its ranges whose row group is read once (read on first use)."""
    layout: List[Tuple[int, int, int]] = []
    parts: List[Any] = []
    for i, piece in enumerate(unit.ranges):
        key = _shared_key(piece, cols)
        if key not in shared:
            continue
        if key not in held:
            held[key] = read(shared[key])
        layout.append((i, len(parts), len(parts) + len(held[key])))
        parts.extend(held[key])
    return tuple(layout), parts


def _drop_finished(unit: WorkUnit, held: Dict[Any, Any], shared: Dict[Any, SharedRead]) -> None:
    for key in [k for k in held if shared[k].last_unit == unit.index]:
        del held[key]


def map_reduce(fn: Callable[..., Any], units: Sequence[WorkUnit], merge: Callable[[Any, Any], Any], *,
               columns: Optional[Sequence[str]] = None, kwargs: Optional[Dict[str, Any]] = None,
               initial: Any = None, **options: Any) -> Any:
    """`merge(...merge(merge(initial, p0), p1)..., pn)` over the partials `fn` returns for the units, in unit
    order: partials stream into the merge as they come, so only one merged result is ever held."""
    merged = initial
    for part in map_units(fn, units, columns=columns, kwargs=kwargs, **options):
        merged = merge(merged, part)
    return merged


def map_chunks(fn: Callable[[List[Any]], List[Any]], items: Sequence[Any], *, min_per_task: int = 8) -> List[Any]:
    """`fn(chunk)` (a list in, a list of the same length out) over `items` cut into one chunk per CPU, as Ray tasks
    when Ray runs and there are at least `min_per_task` items per chunk, else here in one call; results in order.
    For small driver-side computations that are costly per item (KS p-values: scipy's kstwo.sf takes up to ~1 s
    for some (D, n) pairs at millions of rows)."""
    import ray

    items = list(items)
    chunks = min(cpus(), len(items) // max(1, min_per_task))
    if not ray.is_initialized() or chunks < 2:
        return list(fn(items))
    bounds = [round(i * len(items) / chunks) for i in range(chunks + 1)]
    remote = _task(_apply, _name(fn))
    fn_ref = ray.put(fn)  # any callable, a functools.partial too
    refs: List[Any] = []
    with cancel_on_interrupt(refs), user_errors():
        refs.extend(remote.remote(fn_ref, items[a:b]) for a, b in zip(bounds, bounds[1:]))
        parts = ray.get(refs)
    return [value for part in parts for value in part]


def threads_env(threads: int) -> Dict[str, Any]:
    """The runtime env of a task that holds `threads` CPUs: a worker process of its own, started with
    OMP_NUM_THREADS=threads. Ray reuses an idle worker for the next task, and a worker that first ran a 1-CPU task
    (a preprocess or drift unit) started with OMP_NUM_THREADS=1: its OpenMP is fixed at one thread when xgboost
    loads it, and xgboost caps `nthread` at OpenMP's maximum, so a 2-CPU fit there trains on one thread (found on
    the full-scale run: 1,018 CPU-s in 954 s of training on 2 cores). Merged into the job's own runtime env (its
    working_dir stays)."""
    return {"env_vars": {"OMP_NUM_THREADS": str(max(1, threads))}}


def run_remote(fn: Callable[..., Any], *args: Any, num_cpus: float = 1, group: Optional["TaskGroup"] = None,
               **kwargs: Any) -> Any:
    """One call of `fn` as a Ray task when Ray runs (so it may run on any node), else here; user errors unwrapped.
    A task of more than one CPU runs in a worker started for that many threads (`threads_env`).

    `group`: the task belongs to a `TaskGroup` (a call waited on by another thread than the main one, which alone
    sees Ctrl-C): `group.cancel()` ends it and makes this call raise KeyboardInterrupt."""
    import ray

    if not ray.is_initialized():
        return fn(*args, **kwargs)
    options: Dict[str, Any] = {"num_cpus": num_cpus, "max_retries": 0}
    if num_cpus > 1:
        options["runtime_env"] = threads_env(int(num_cpus))
    ref = ray.remote(fn).options(**options).remote(*args, **kwargs)
    with cancel_on_interrupt([ref]), (group.member(ref) if group else contextlib.nullcontext()), user_errors():
        return ray.get(ref)


class TaskGroup:
    """Ray tasks that other threads wait for (`run_remote(..., group=)`): only the main thread receives Ctrl-C, and
    a thread blocked in `ray.get` would otherwise wait until its task finished on its own (a whole training fit).
    `cancel()` cancels every member, and any task added later, so those threads return at once."""

    def __init__(self) -> None:
        self._refs: set = set()
        self._lock = threading.Lock()
        self.cancelled = False

    @contextlib.contextmanager
    def member(self, ref: Any) -> Iterator[None]:
        with self._lock:
            self._refs.add(ref)
            cancelled = self.cancelled
        if cancelled:
            _cancel([ref])
        try:
            yield
        finally:
            with self._lock:
                self._refs.discard(ref)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            refs = list(self._refs)
        _cancel(refs)


CANCEL_WAIT_S = 10.0  # how long a cancellation waits for its force-killed workers to be gone


@contextlib.contextmanager
def cancel_on_interrupt(refs: List[Any]) -> Iterator[None]:
    """When the driver is interrupted while waiting for `refs` (the list may grow inside the block), cancel them:
    the work stops now rather than when the driver's Ray shuts down (on a cluster, the job's tasks would go on).
    Also when a pass's generator is closed with tasks in flight (its consumer was interrupted between two results)."""
    try:
        yield
    except (KeyboardInterrupt, GeneratorExit):
        _cancel(refs)
        raise


def _cancel(refs: Sequence[Any]) -> None:
    import ray

    for ref in refs:
        try:
            ray.cancel(ref, force=True)  # force: kill the worker, also inside xgboost's or Arrow's C++ code
        except Exception:  # noqa: BLE001 - already finished, or Ray is going away: nothing left to stop
            pass
    # ray.cancel only asks: wait (briefly) until the workers are gone, so that the caller's clean-up (a fit's
    # checkpoints removed) is not followed by one more file from a task still running
    try:
        ray.wait(list(refs), num_returns=len(refs), timeout=CANCEL_WAIT_S)
    except Exception:  # noqa: BLE001 - Ray going away: its workers go with it
        pass


class Blocks:
    """Per-unit results that later passes map over again (k-means iterations): kept in this process when they are
    small, in Ray's object store (one task per block and pass, where the block lives) when they are not."""

    def __init__(self, items: List[Any], remote: bool) -> None:
        self.items, self.remote = items, remote

    def map(self, fn: Callable[..., Any], *args: Any) -> List[Any]:
        """[fn(block, *args) for every block], in block order."""
        if not self.remote:
            return [fn(block, *args) for block in self.items]
        import ray

        remote = _task(_apply, _name(fn))
        refs: List[Any] = []
        with cancel_on_interrupt(refs), user_errors():
            refs.extend(remote.remote(fn, ref, *args) for ref in self.items)
            return ray.get(refs)


# Results below this many bytes in all stay in the driver: a pass over them in numpy here costs less than
# scheduling a task per block (measured on the segment stage: k-means over 12k rows, 20 iterations).
LOCAL_BLOCK_BYTES = 256 * 1024**2


def _apply(fn: Callable[..., Any], block: Any, *args: Any) -> Any:
    return fn(block, *args)


def blocks(fn: Callable[..., Any], units: Sequence[WorkUnit], *, estimated_bytes: int,
           columns: Optional[Sequence[str]] = None, kwargs: Optional[Dict[str, Any]] = None) -> Blocks:
    """`fn(table, unit, **kwargs)` per unit, the results kept as `Blocks` for passes to come: in this process when
    `estimated_bytes` (the caller's estimate of all results together) is below LOCAL_BLOCK_BYTES or Ray is not
    running, else left in the object store where each was computed."""
    import ray

    if not ray.is_initialized() or estimated_bytes < LOCAL_BLOCK_BYTES:
        return Blocks(list(map_units(fn, units, columns=columns, kwargs=kwargs)), remote=False)
    remote = _task(_run_unit, _name(fn))
    fn_ref, kwargs_ref = ray.put(fn), ray.put(dict(kwargs or {}))
    refs: List[Any] = []
    with cancel_on_interrupt(refs):
        refs.extend(remote.remote(fn_ref, unit, columns, kwargs_ref) for unit in units)
        ray.wait(refs, num_returns=len(refs), fetch_local=False)  # all computed before the passes over them
    return Blocks(refs, remote=True)


# --- Ray Data ----------------------------------------------------------------------------------------------
# Ray Data is imported only inside these functions: a stage that never hands Ray a Dataset never pays for it.


def read_dataset(files: Sequence[str], columns: Optional[Sequence[str]] = None, *,
                 map_batches: Optional[Callable[..., Any]] = None, fn_kwargs: Optional[Dict[str, Any]] = None) -> Any:
    """The Parquet `files` (local or s3://, one store) as a streamed Ray Dataset of `columns`; with `map_batches`,
    each numpy batch through it (Ray Train's input, kon_ray/train/stage.py)."""
    import ray.data

    fs, _ = storage.filesystem(files[0])
    paths = [storage.filesystem(f)[1] for f in files]
    ds = ray.data.read_parquet(paths, filesystem=fs, columns=list(columns) if columns else None)
    if map_batches is not None:
        ds = ds.map_batches(map_batches, batch_format="numpy", fn_kwargs=fn_kwargs or {})
    return ds


def materialize(ds: Any) -> Any:
    """A Ray Dataset read once into the object store (its pipeline not re-run by each consumer)."""
    return ds.materialize()


def is_dataset(data: Any) -> bool:
    """Whether `data` is a Ray Dataset (Ray Data imported only to ask)."""
    import ray.data

    return isinstance(data, ray.data.Dataset)


def dataset_schema(ds: Any) -> pa.Schema:
    """A Ray Dataset's Arrow schema, from one row (the same types whether its blocks are Arrow or pandas); a
    ValueError when it is empty."""
    return ds.take_batch(1, batch_format="pyarrow").schema


def dataset_rows(ds: Any) -> int:
    return int(ds.count())


def dataset_columns(ds: Any, columns: Sequence[str], *, materialized: bool = False) -> Any:
    """A Ray Dataset reduced to `columns`; `materialized`: read once, so later passes do not re-run its pipeline."""
    with user_errors():
        out = ds.select_columns(list(columns))
        return out.materialize() if materialized else out


def reduce_dataset(ds: Any, fn: Callable[[pa.Table], Any], merge: Callable[[Any, Any], Any]) -> Any:
    """`fn(block)` over every block of a Ray Dataset (Arrow), merged on the driver as the blocks stream in."""
    merged = None
    with user_errors():
        for block in ds.map_batches(_pickled, fn_kwargs={"fn": fn}, batch_format="pyarrow",
                                    batch_size=None).iter_batches(batch_format="pyarrow", batch_size=None,
                                                                  prefetch_batches=0):
            for blob in block.column("partial").to_pylist():
                merged = merge(merged, pickle.loads(blob))
    return merged


def _pickled(table: pa.Table, fn: Callable[[pa.Table], Any]) -> pa.Table:
    return pa.table({"partial": pa.array([pickle.dumps(fn(table), protocol=5)], pa.binary())})


def dataset_tables(ds: Any, keep: Optional[Callable[..., pa.Table]] = None,
                   kwargs: Optional[Dict[str, Any]] = None) -> List[pa.Table]:
    """A Ray Dataset's non-empty blocks as Arrow tables on the driver, each through `keep(table, **kwargs)` first
    (a filter: what comes back must be small)."""
    import ray

    if keep is not None:
        ds = ds.map_batches(keep, fn_kwargs=kwargs or {}, batch_format="pyarrow", batch_size=None)
    with user_errors():
        return [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]


# --- spilling ----------------------------------------------------------------------------------------------


def spilled_bytes() -> Optional[int]:
    """Bytes the connected Ray has spilled from its object store to disk since it started; None without a Ray.

    Ray exposes the counter only through its internal memory-info call (what `ray memory --stats-only` prints), so a
    failure to read it is reported as unknown rather than stopping a run.
    """
    try:
        import ray

        if not ray.is_initialized():
            return None
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        reply = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address))
        return int(reply.store_stats.spilled_bytes_total)
    except Exception:  # noqa: BLE001 - an internal API: unknown, never fatal
        return None


# --- errors --------------------------------------------------------------------------------------------------


def kon_error_in(exc: Optional[BaseException]) -> Optional[KonError]:
    """The KonError a Ray task, actor or Ray Train worker raised, found through Ray's wrappers (RayTaskError.cause,
    __cause__, Ray Train's worker_failures / controller_failure), or None when the failure is not a user error."""
    for current in _chain(exc):
        # Ray's RayTaskError(DataError) is both a RayTaskError and a DataError: the user's own error is its cause
        if isinstance(current, KonError) and not isinstance(getattr(current, "cause", None), BaseException):
            return current
    return None


def interrupted_in(exc: Optional[BaseException]) -> bool:
    """Whether `exc` is, or wraps, an interruption: a KeyboardInterrupt, or Ray's TaskCancelledError (what a task
    interrupted by Ctrl-C or cancelled after one becomes: RayTaskError(TaskCancelledError)), found through the same
    wrappers as `kon_error_in` (a Ray Train worker's failure included)."""
    from ray.exceptions import TaskCancelledError

    return any(isinstance(e, (KeyboardInterrupt, TaskCancelledError)) for e in _chain(exc))


def _chain(exc: Optional[BaseException]) -> Iterator[BaseException]:
    seen: List[BaseException] = [exc] if exc is not None else []
    visited: set[int] = set()
    while seen:
        current = seen.pop()
        if id(current) in visited or len(visited) > 50:
            continue
        visited.add(id(current))
        yield current
        for attr in ("cause", "__cause__", "__context__", "controller_failure"):
            nested = getattr(current, attr, None)
            if isinstance(nested, BaseException):
                seen.append(nested)
        for nested in (getattr(current, "worker_failures", None) or {}).values():
            if isinstance(nested, BaseException):
                seen.append(nested)


class user_errors:
    """`with user_errors(): ...`: a KonError raised inside Ray re-raised as itself (its one line), not as Ray's
    wrapped traceback; an interruption however Ray wrapped it (`interrupted_in`) re-raised as KeyboardInterrupt, so
    that the command exits 130 and the MLflow run ends KILLED. Anything else passes through unchanged."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception):
            return False
        original = kon_error_in(exc)
        if original is not None and original is not exc:
            raise original from None
        if original is None and interrupted_in(exc):
            raise KeyboardInterrupt() from exc
        return False
