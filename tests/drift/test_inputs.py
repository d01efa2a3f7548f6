"""Awkward inputs end to end (run_check, the standalone command's core, in this process): an all-null current
column, a folder whose files disagree on types (in any order), unanalysed Arrow types and infinities give a
report, not a crash; and the KS sample spans a time-ordered reference in large row groups."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from kon_ray.drift.check import run_check
from kon_ray.drift.config import DriftConfig
from tests.drift import oracle


def _strict(path) -> dict:
    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _files(folder, tables) -> str:
    folder.mkdir(parents=True)
    for i, table in enumerate(tables):
        pq.write_table(table, folder / f"part-{i}.parquet")
    return str(folder)


def test_an_all_null_current_column_is_a_measured_shift(tmp_path):
    ref = _files(tmp_path / "ref", [pa.table({"tariff": pa.array(["a", "b"] * 10), "kwh": pa.array([1.0] * 20)})])
    # pandas writes an all-None column as an Arrow null column
    cur = _files(tmp_path / "cur", [pa.table({"tariff": pa.nulls(10), "kwh": pa.nulls(10)})])
    report = run_check(DriftConfig(), cur, str(tmp_path / "out"), reference=ref)
    got = {f["name"]: f for f in report["features"]}
    assert got["tariff"]["type"] == "categorical" and got["tariff"]["current_missing"] == 10
    assert got["tariff"]["severity"] == "HIGH"  # every value went missing: a shift, not an error
    assert got["kwh"]["type"] == "numeric" and got["kwh"]["statistic"] is None and got["kwh"]["notes"]
    _strict(tmp_path / "out" / "drift_report.json")


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2)])
def test_a_folder_with_mixed_column_types_in_any_order(tmp_path, order):
    """A null-typed column in one file (the first, or not), a string_view / dictionary / large_string column
    beside plain strings, an int file beside a float one: the same report whatever the files' order."""
    tables = [
        pa.table({"tariff": pa.nulls(4), "kwh": pa.nulls(4), "mixed": pa.array([1, 2, 3, 4])}),
        pa.table({"tariff": pa.array(["a", "b", "a", None]).cast(pa.string_view()),
                  "kwh": pa.array([1, 2, 3, 4], pa.int64()), "mixed": pa.array(["x", "y", "x", "y"])}),
        pa.table({"tariff": pa.array(["a", "b", "c", "a"]).dictionary_encode(),
                  "kwh": pa.array([1.5, np.nan, 2.5, 3.0]), "mixed": pa.array([5, 6, 7, 8])}),
    ]
    ref = _files(tmp_path / "ref", [tables[i] for i in order])
    cur = _files(tmp_path / "cur", [pa.table({"tariff": pa.array(["a", "c"] * 3, pa.large_string()),
                                              "kwh": pa.array([1.0, 2.0, 3.0] * 2), "mixed": pa.array([1] * 6)})])
    report = run_check(DriftConfig(), cur, str(tmp_path / "out"), reference=ref)
    got = {f["name"]: f for f in report["features"]}
    ref_tariff = ["a", "b", "a", None, "a", "b", "c", "a", None, None, None, None]
    cur_tariff = ["a", "c"] * 3
    expected = oracle.categorical_stats(np.array(ref_tariff, object), np.array(cur_tariff, object))
    assert got["tariff"]["psi"] == pytest.approx(expected["psi"], abs=1e-12)
    assert got["tariff"]["statistic"] == pytest.approx(expected["chi2"], rel=1e-12)
    ref_kwh = np.array([np.nan] * 4 + [1, 2, 3, 4, 1.5, np.nan, 2.5, 3.0])
    cur_kwh = np.array([1.0, 2.0, 3.0] * 2)
    assert got["kwh"]["psi"] == pytest.approx(oracle.psi_numeric_values(ref_kwh, cur_kwh), abs=1e-12)
    assert got["kwh"]["statistic"] == pytest.approx(oracle.ks_d(ref_kwh, cur_kwh), abs=1e-12)
    (skipped,) = report["skipped"]  # numeric in two files, strings in one: named, with the way to analyse it
    assert skipped["name"] == "mixed" and "drift.column_types.mixed" in skipped["reason"]
    assert "not analysed: mixed" in (tmp_path / "out" / "drift_summary.txt").read_text()


def test_unanalysed_types_are_named_with_the_reason(tmp_path):
    table = pa.table({"kwh": pa.array([1.0, 2.0]), "read_at": pa.array([1, 2], pa.timestamp("s")),
                      "blob": pa.array([b"x", b"y"]), "tags": pa.array([[1], [2]]),
                      "amount": pa.array([1, 2], pa.decimal128(10, 2)), "paid": pa.array([True, False])})
    ref, cur = _files(tmp_path / "ref", [table]), _files(tmp_path / "cur", [table])
    report = run_check(DriftConfig(), cur, str(tmp_path / "out"), reference=ref)
    assert {f["name"]: f["type"] for f in report["features"]} == {"kwh": "numeric", "amount": "numeric",
                                                                  "paid": "categorical"}
    reasons = {s["name"]: s["reason"] for s in report["skipped"]}
    assert sorted(reasons) == ["blob", "read_at", "tags"]
    assert "dates and times" in reasons["read_at"] and "binary" in reasons["blob"] and "nested" in reasons["tags"]


def test_infinities_have_their_own_bins_and_strict_json(tmp_path):
    ref_values = np.array([np.inf] * 30 + list(np.arange(60.0)) + [-np.inf] * 5 + [np.nan] * 5)
    cur_values = np.array(list(np.arange(60.0) + 10) + [np.inf] * 2 + [np.nan] * 8)
    ref = _files(tmp_path / "ref", [pa.table({"v": ref_values})])
    cur = _files(tmp_path / "cur", [pa.table({"v": cur_values})])
    report = run_check(DriftConfig(), cur, str(tmp_path / "out"), reference=ref)
    (v,) = report["features"]
    finite = ref_values[np.isfinite(ref_values)]
    assert v["bins"]["edges"] == np.unique(np.quantile(finite, np.arange(1, 10) / 10)).tolist()  # finite edges
    assert v["bins"]["reference"][-3:] == [5, 30, 5] and v["bins"]["current"][-3:] == [0, 2, 8]  # -inf, +inf, missing
    assert v["bins"]["labels"][-3:] == ["-inf", "+inf", "missing"]
    assert v["psi"] == pytest.approx(oracle.psi_numeric_values(ref_values, cur_values), abs=1e-12)
    assert v["statistic"] == pytest.approx(oracle.ks_d(ref_values, cur_values), abs=1e-12) and v["ks_exact"]
    summary = _strict(tmp_path / "out" / "reference_summary.json")
    _strict(tmp_path / "out" / "drift_report.json")
    again = run_check(DriftConfig(), cur, str(tmp_path / "again"),
                      reference_summary=str(tmp_path / "out" / "reference_summary.json"))
    assert again["features"] == report["features"] and summary["numeric"]["v"]["ks_edges"][0] == 0.0


def test_ks_sample_spans_a_time_ordered_reference_in_large_row_groups(tmp_path):
    """200k rows rising with time in two row groups of 100k: the 1000-row KS edge sample is every 200th row of
    the whole reference, so D is within drift.ks_tolerance of scipy's exact D (a sample from the first rows only
    would put every edge below the current window's values)."""
    n = 200_000
    rng = np.random.default_rng(5)
    rise = np.sort(rng.normal(0, 1, n)) + np.linspace(0, 4, n)  # time-ordered: later rows larger
    cur = rng.normal(2.5, 1.2, 50_000)
    (tmp_path / "ref").mkdir()
    pq.write_table(pa.table({"usage": rise}), tmp_path / "ref" / "p.parquet", row_group_size=100_000)
    assert pq.ParquetFile(tmp_path / "ref" / "p.parquet").metadata.num_row_groups == 2
    cfg = DriftConfig(sample_rows=1000, ks_bins=1024)
    report = run_check(cfg, _files(tmp_path / "cur", [pa.table({"usage": cur})]), str(tmp_path / "out"),
                       reference=str(tmp_path / "ref"))
    (f,) = report["features"]
    exact = stats.ks_2samp(rise, cur).statistic  # D itself does not depend on the p-value method
    assert f["statistic"] <= exact + 1e-12 <= f["ks_upper"] + 2e-12
    assert exact - f["statistic"] <= cfg.ks_tolerance and report["summary"]["ks_bound_exceeded"] == []


def _schema_case(tmp_path, current_kwh) -> tuple:
    ref = _files(tmp_path / "ref", [pa.table({"tariff": pa.array(["a", "b"] * 10), "kwh": pa.array([1.0] * 20)})])
    cur = _files(tmp_path / "cur", [pa.table({"tariff": pa.array(["a", "b"] * 5), "kwh": current_kwh})])
    return ref, cur


@pytest.mark.parametrize("current_kwh", [pa.array(["1.0"] * 10), pa.array(list(range(10)), pa.timestamp("s"))],
                         ids=["text", "timestamp"])
@pytest.mark.parametrize("saved", [False, True], ids=["data", "saved_summary"])
def test_a_column_whose_kind_changes_is_a_data_error_on_both_paths(tmp_path, current_kwh, saved):
    """Issue 30 item 5, the schema rule: numeric in the reference, text (or a type drift does not analyse) in the
    current is a DataError naming the column and both kinds, against the data or a saved summary, and nothing is
    written; so is a column missing from the current. A skip would let the check pass with no drift."""
    from kon_ray.errors import DataError

    ref, cur = _schema_case(tmp_path, current_kwh)
    kwargs: dict = {"reference": ref}
    if saved:
        run_check(DriftConfig(), ref, str(tmp_path / "fit"), reference=ref)
        kwargs = {"reference_summary": str(tmp_path / "fit" / "reference_summary.json")}
    with pytest.raises(DataError, match="'kwh' changed kind: numeric .* in the current"):
        run_check(DriftConfig(), cur, str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()
    missing = _files(tmp_path / "cur_missing", [pa.table({"tariff": pa.array(["a"] * 4)})])
    with pytest.raises(DataError, match="column 'kwh' is missing"):
        run_check(DriftConfig(), missing, str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_declared_kind_compares_a_changed_column_and_mixed_kinds_within_one_side_stay_a_skip(tmp_path):
    ref, cur = _schema_case(tmp_path, pa.array(["1.0"] * 10))
    report = run_check(DriftConfig(column_types={"kwh": "categorical"}), cur, str(tmp_path / "out"), reference=ref)
    kwh = {f["name"]: f for f in report["features"]}["kwh"]
    # categories "1.0" in both sides: a float 1.0 prints "1" as a category, the text "1.0" stays "1.0": all moved
    assert kwh["type"] == "categorical" and kwh["severity"] == "HIGH"
    # mixed within the current (one numeric file, one text file): the documented skip, not a schema change
    mixed = _files(tmp_path / "mixed", [pa.table({"tariff": pa.array(["a"] * 4), "kwh": pa.array([1.0] * 4)}),
                                       pa.table({"tariff": pa.array(["b"] * 4), "kwh": pa.array(["x"] * 4)})])
    report = run_check(DriftConfig(), mixed, str(tmp_path / "out2"), reference=ref)
    assert [s["name"] for s in report["skipped"]] == ["kwh"]
