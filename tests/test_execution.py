"""The execution layer: work units planned from Parquet footers cover every row and column exactly once on any file
layout, spread one big row group over every CPU, respect the memory bound, and run the same in-process and on Ray;
a user error raised inside a task comes back as itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray import execution
from kon_ray.errors import DataError

ROWS = 50_000
COLUMNS = [f"c{i}" for i in range(12)]


def _table() -> pa.Table:
    rng = np.random.default_rng(3)
    data = {"id": np.arange(ROWS)}
    data.update({c: rng.normal(size=ROWS) for c in COLUMNS})
    return pa.table(data)


def _layouts(tmp_path: Path) -> Dict[str, List[str]]:
    """The layouts users have: one file with one big row group (pyarrow's default), one file of many row groups,
    and a folder of files of mixed sizes."""
    table = _table()
    one = tmp_path / "one.parquet"
    pq.write_table(table, one)
    many = tmp_path / "many.parquet"
    pq.write_table(table, many, row_group_size=3_000)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    bounds = [0, 7, 20_000, 20_001, 33_000, ROWS]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(table.slice(a, b - a), mixed / f"part-{i}.parquet", row_group_size=4_096)
    return {"one row group": [str(one)], "many row groups": [str(many)],
            "mixed files": sorted(str(p) for p in mixed.iterdir())}


def _row_ids(units) -> np.ndarray:
    return np.concatenate([execution.read_unit(u, ["id"]).column("id").to_numpy() for u in units])


@pytest.mark.parametrize("layout", ["one row group", "many row groups", "mixed files"])
@pytest.mark.parametrize("workers", [1, 2, 7])
def test_row_units_cover_every_row_once_in_order(tmp_path, layout, workers):
    files = _layouts(tmp_path)[layout]
    units = execution.plan(files, ["id", *COLUMNS], workers=workers, min_rows=1_000)
    np.testing.assert_array_equal(_row_ids(units), np.arange(ROWS))
    # each range knows where it sits in the whole input, whatever the layout
    for unit in units:
        ids = execution.read_unit(unit, ["id"]).column("id").to_numpy()
        starts = np.cumsum([0] + [r.rows for r in unit.ranges])[:-1]
        for piece, offset in zip(unit.ranges, starts):
            assert ids[offset] == piece.first_row
    assert len(units) >= min(workers, ROWS // 1_000)  # at least one unit per CPU, even for one row group


@pytest.mark.parametrize("layout", ["one row group", "many row groups", "mixed files"])
def test_column_units_cover_every_cell_once(tmp_path, layout):
    files = _layouts(tmp_path)[layout]
    units = execution.plan(files, COLUMNS, per_column=True, workers=4)
    seen: Dict[str, List[np.ndarray]] = {}
    for unit in units:
        table = execution.read_unit(unit, COLUMNS)
        for name in table.column_names:
            seen.setdefault(name, []).append(table.column(name).to_numpy())
    expected = _table()
    assert sorted(seen) == sorted(COLUMNS)
    for name, parts in seen.items():
        np.testing.assert_array_equal(np.concatenate(parts), expected.column(name).to_numpy())


def test_one_big_row_group_spreads_by_columns_not_row_ranges(tmp_path):
    files = _layouts(tmp_path)["one row group"]
    units = execution.plan(files, COLUMNS, per_column=True, workers=2)
    assert len(units) == 2 * execution.UNITS_PER_CPU  # every core busy, twice over
    assert all(len(u.ranges) == 1 and u.ranges[0].rows == ROWS for u in units)  # no partial decoding needed
    assert sorted(c for u in units for c in u.columns) == sorted(COLUMNS)


def test_units_respect_the_memory_bound(tmp_path):
    files = _layouts(tmp_path)["one row group"]
    row_bytes = 8 * (len(COLUMNS) + 1)
    bound = 100_000  # bytes: about 1,000 rows of 13 float64/int64 columns
    units = execution.plan(files, ["id", *COLUMNS], workers=2, max_bytes=bound, min_rows=1)
    assert max(u.rows for u in units) * row_bytes <= bound * 1.05
    np.testing.assert_array_equal(_row_ids(units), np.arange(ROWS))


@pytest.fixture
def tasks_defined_here(ray_session):
    """Ray workers cannot import this test module: send its task functions by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _column_sums(table: pa.Table, unit) -> Dict[str, float]:
    return {name: float(np.sum(table.column(name).to_numpy())) for name in table.column_names}


def _add(total, part):
    total = dict(total or {})
    for name, value in part.items():
        total[name] = total.get(name, 0.0) + value
    return total


def test_map_reduce_gives_the_same_answer_in_process_and_on_ray(tmp_path, tasks_defined_here):
    import ray

    files = _layouts(tmp_path)["mixed files"]
    units = execution.plan(files, COLUMNS, per_column=True, workers=3)
    on_ray = execution.map_reduce(_column_sums, units, _add)
    assert ray.is_initialized()
    local = {}
    for unit in units:  # the same units, run here one by one
        local = _add(local, _column_sums(execution.read_unit(unit), unit))
    assert on_ray == local
    expected = _table()
    for name in COLUMNS:
        assert on_ray[name] == pytest.approx(float(np.sum(expected.column(name).to_numpy())), rel=1e-12)


def _fails_on_the_second_unit(table: pa.Table, unit) -> int:
    if unit.index == 1:
        raise DataError(f"{unit.ranges[0].file}: column 'c3' has an impossible value")
    return table.num_rows


def test_a_user_error_inside_a_task_comes_back_as_itself(tmp_path, tasks_defined_here):
    files = _layouts(tmp_path)["many row groups"]
    units = execution.plan(files, ["c3"], workers=2, min_rows=1_000)
    with pytest.raises(DataError, match=r"column 'c3' has an impossible value$") as caught:
        list(execution.map_units(_fails_on_the_second_unit, units))
    assert type(caught.value) is DataError
    assert "\n" not in str(caught.value)


def test_map_chunks_spreads_a_list_over_tasks_and_keeps_its_order(ray_session):
    from functools import partial

    from kon_ray.drift.config import DriftConfig
    from kon_ray.drift.statistics import KS, Counts, measure_each

    # KS of 40 features as compare spreads it (its p-value is scipy's kstwo.sf): one edge, D = k / 40,000
    none = np.zeros(1, dtype=np.int64)
    counts = [Counts("numeric", none, none, np.array([0, 50_000, 0, 0]), np.array([0, 40_000 - k, k, 0]))
              for k in np.linspace(20, 800, 40).astype(np.int64)]
    each = partial(measure_each, KS, DriftConfig())
    assert execution.map_chunks(each, counts) == each(counts)  # one by one here


def _ids_and_sum(table: pa.Table, unit) -> tuple:
    return unit.index, table.column("id").to_numpy().tolist(), float(np.sum(table.column("c1").to_numpy()))


def test_one_big_row_group_is_decoded_once_and_sliced_by_its_row_units(tmp_path, monkeypatch, tasks_defined_here):
    """Per-row work on one big row group: the row group is read once (by column parts) and every unit slices its
    rows from it, on Ray and in process (where no range is decoded on its own), with the same answers as reading
    each range alone."""
    files = _layouts(tmp_path)["one row group"]
    units = execution.plan(files, ["id", "c1"], workers=3, min_rows=1_000)
    assert len(units) == 3 and all(r.rows < ROWS for u in units for r in u.ranges)
    shared = execution.shared_reads(units, ["id", "c1"], workers=2)
    assert [(s.parts, s.last_unit) for s in shared.values()] == [((("id",), ("c1",)), 2)]
    expected = [_ids_and_sum(execution.read_unit(u, ["id", "c1"]), u) for u in units]  # each range decoded alone

    def no_partial_decoding(piece, columns):
        raise AssertionError(f"{piece} decoded on its own")

    monkeypatch.setattr(execution, "read_range", no_partial_decoding)
    on_ray = list(execution.map_units(_ids_and_sum, units, columns=["id", "c1"]))  # ray_session: on Ray
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    here = list(execution.map_units(_ids_and_sum, units, columns=["id", "c1"]))
    assert on_ray == here == expected
    assert [i for _, ids, _ in here for i in ids] == list(range(ROWS))


def test_cpu_nodes_counts_the_alive_nodes_that_have_cpus(ray_session):
    """The train stage's one-node rule reads it (kon_ray/train/stage.py `distributed`); the three-node cluster's
    head without CPUs is not counted (tests/cluster/test_multinode.py trains with Ray Train forced)."""
    assert execution.cpu_nodes() == 1


def _openmp_threads_and_env(_: int = 0):
    """In a Ray task: the OpenMP thread cap xgboost trains under in this process, and the job's own environment."""
    import threadpoolctl
    import xgboost  # noqa: F401  (loads OpenMP as a fit would)

    caps = [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["internal_api"] == "openmp"]
    return min(caps), os.environ.get("AWS_ENDPOINT_URL")


def test_a_task_of_two_cpus_trains_on_two_threads_even_after_one_cpu_tasks(tasks_defined_here, moto_server):
    """Ray reuses idle workers, and one started for a 1-CPU task has OpenMP fixed at one thread, which xgboost's
    `nthread` cannot raise: a 2-CPU task (the one-process training fit) gets a worker started for 2 threads, with
    the job's environment kept (here the session's moto endpoint)."""
    import ray

    one_cpu = ray.remote(num_cpus=1)(_openmp_threads_and_env)
    warm = ray.get([one_cpu.remote(i) for i in range(6)])  # 1-CPU tasks warm the worker pool
    assert {threads for threads, _ in warm} == {1}
    assert execution.run_remote(_openmp_threads_and_env, num_cpus=2) == (2, moto_server)
