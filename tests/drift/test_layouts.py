"""Drift on any layout: the same data as one row group, many row groups, many small files of mixed sizes, or an
in-memory frame, cut into few or many work units, gives the same reference summary and the same report (PSI,
chi-squared and KS alike, since the KS edge sample is taken by row position in the whole input); and the KS edge
sample spans the whole of a time-ordered reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray import execution
from kon_ray.drift.compare import compare
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.engine import fit_reference, sample_positions, summarise_current
from tests.drift import oracle

ROWS = 20_000
# KS edges from a 1000-row sample (every 20th row) in 64 bins: the sample and the bound both matter here
CFG = DriftConfig(ks_bins=64, sample_rows=1000)
FILE_SIZES = [1, 999, 3000, 17, 5000, 1983, 4000, 2000, 3000]  # sums to ROWS


def _frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rise = np.linspace(0.0, 100.0, n) + shift * 100  # time-ordered: values rise with the row's position
    cont = rng.normal(shift, 1.0, n)
    cont[rng.random(n) < 0.05] = np.nan
    cat = rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2 - shift / 2, 0.1 + shift / 2]).astype(object)
    cat[rng.random(n) < 0.03] = None
    return pd.DataFrame({
        "rise": rise,
        "cont": cont,
        "disc": rng.poisson(3 + shift, n).astype("int64"),
        "cat": pd.Series(cat, dtype="string"),
        "flag": rng.random(n) < 0.3 + shift,
    })


def _write_layouts(frame: pd.DataFrame, folder) -> dict:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    paths = {}
    one = folder / "one_group"
    one.mkdir(parents=True)
    pq.write_table(table, one / "part.parquet")  # pyarrow's default: one row group up to 1Mi rows
    assert pq.ParquetFile(one / "part.parquet").metadata.num_row_groups == 1
    paths["one_group"] = str(one)
    groups = folder / "row_groups"
    groups.mkdir()
    pq.write_table(table, groups / "part.parquet", row_group_size=1000)
    assert pq.ParquetFile(groups / "part.parquet").metadata.num_row_groups == 20
    paths["row_groups"] = str(groups)
    files = folder / "files"
    files.mkdir()
    assert sum(FILE_SIZES) == len(frame)
    start = 0
    for i, size in enumerate(FILE_SIZES):
        pq.write_table(table.slice(start, size), files / f"part-{i:03d}.parquet", row_group_size=700)
        start += size
    paths["files"] = str(files)
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    ref, cur = _frame(ROWS, 0.0, 1), _frame(ROWS, 0.1, 2)
    folder = tmp_path_factory.mktemp("layouts")
    return ref, cur, _write_layouts(ref, folder / "ref"), _write_layouts(cur, folder / "cur")


def _check(ref, cur, cfg=CFG):
    summary = fit_reference(ref, cfg)
    return summary, {f["name"]: f for f in compare(summary, summarise_current(summary, cur, cfg), cfg)}


@pytest.fixture
def units(monkeypatch):
    """Plan with a given worker count and unit floor: few units, or many (column groups and row ranges); the
    reference fitted in one read (units holding whole columns) or in passes over row ranges (as when a column
    does not fit one unit's memory)."""
    plan, whole = execution.plan, execution.plan_whole_columns

    def use(workers: int, min_rows: int, one_read: bool) -> None:
        def planned(files, columns, **kw):
            return plan(files, columns, **{**kw, "workers": workers, "min_rows": min_rows})

        def planned_whole(files, columns, **kw):
            return whole(files, columns, **{**kw, "workers": workers}) if one_read else None

        monkeypatch.setattr(execution, "plan", planned)
        monkeypatch.setattr(execution, "plan_whole_columns", planned_whole)

    return use


def test_sample_positions_are_global_row_positions():
    # rows 5..14 of the input (one range) and rows 30..33 (another): every 4th row of the input is 8, 12 and 32
    unit = execution.WorkUnit(0, (execution.RowRange("f", 0, 5, 15, 40, 5), execution.RowRange("f", 1, 0, 4, 4, 30)))
    assert sample_positions(unit, 4).tolist() == [3, 7, 12]  # offsets in the unit's table: 8-5, 12-5, 10 + (32-30)
    assert sample_positions(unit, 1).tolist() == list(range(14))


def test_every_layout_and_unit_count_gives_the_same_report(ray_session, data, units):
    ref, cur, ref_paths, cur_paths = data
    expected_summary, expected = _check(ref, cur)  # the frames themselves: one in-memory unit, no Ray
    assert expected_summary.rows == ROWS
    for one_read in (True, False):
        for workers, min_rows in ((1, 16_384), (7, 500)):
            units(workers, min_rows, one_read)
            for layout in ref_paths:
                summary, got = _check(ref_paths[layout], cur_paths[layout])
                case = (layout, workers, "one read" if one_read else "passes")
                assert summary.to_json() | {"source": ""} == expected_summary.to_json() | {"source": ""}, case
                assert got == expected, case


def test_many_units_do_cut_columns_and_row_groups(data):
    _, _, ref_paths, _ = data
    from kon_ray.storage import find_files

    planned = execution.plan(find_files(ref_paths["one_group"]), ["rise", "cont", "disc", "cat", "flag"],
                             per_column=True, workers=7, min_rows=500)
    assert len({u.columns for u in planned}) > 1  # one row group: spread by columns first
    assert any(r.rows < r.group_rows for u in planned for r in u.ranges)  # ... then by row ranges


def test_statistics_match_the_oracles(ray_session, data):
    ref, cur, ref_paths, cur_paths = data
    _, got = _check(ref_paths["files"], cur_paths["files"])
    for name in ("rise", "cont", "disc"):
        assert got[name]["psi"] == pytest.approx(oracle.psi_numeric(ref[name], cur[name]), abs=1e-12), name
        exact = oracle.ks(ref[name], cur[name]).statistic
        assert got[name]["statistic"] - 1e-12 <= exact <= got[name]["ks_upper"] + 1e-12, name
        assert got[name]["ks_upper"] - got[name]["statistic"] <= 1 / CFG.ks_bins * 1.5, name
    assert got["disc"]["ks_exact"]  # few distinct values: all are edges
    for name in ("cat", "flag"):
        expected = oracle.chi2(ref[name], cur[name])
        assert got[name]["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
        assert got[name]["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        assert got[name]["psi"] == pytest.approx(oracle.psi_categorical(ref[name], cur[name]), abs=1e-12)


@pytest.mark.parametrize("one_read", [True, False])
@pytest.mark.parametrize("layout", ["one_group", "row_groups", "files"])
def test_ks_edges_span_a_time_ordered_reference(ray_session, data, units, layout, one_read):
    ref, _, ref_paths, _ = data
    units(3, 500, one_read)
    rise = ref["rise"].to_numpy()
    edges = fit_reference(ref_paths[layout], CFG, columns=["rise"]).numeric["rise"].ks_edges
    assert edges[0] == -np.inf and edges[-1] == np.inf  # always there (sample_edges); the sampled edges between
    edges = edges[1:-1]
    step = ROWS // CFG.sample_rows  # every 20th row: rows 0, 20, ..., 19980
    assert edges[0] == rise[0]
    assert edges[-1] == rise[ROWS - step]
    # evenly spread over the whole range: no gap wider than a few sample steps of the rising column
    assert np.max(np.diff(edges)) <= 2 * (rise[-1] - rise[0]) / CFG.ks_bins


def test_whole_column_units_hold_every_row_of_their_columns(data):
    _, _, ref_paths, _ = data
    from kon_ray.storage import find_files

    columns = ["rise", "cont", "disc", "cat", "flag"]
    files = find_files(ref_paths["files"])
    planned = execution.plan_whole_columns(files, columns, workers=2)
    assert [c for u in planned for c in u.columns] == columns  # each column in exactly one unit, in order
    assert all(sum(r.rows for r in u.ranges) == ROWS for u in planned)
    # file 0: 1 row; file 1: row groups of 700 and 299
    assert [r.first_row for r in planned[0].ranges][:3] == [0, 1, 701]
    assert execution.plan_whole_columns(files, columns, max_bytes=1000) is None  # a column too big for one unit
