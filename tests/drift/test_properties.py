"""Property-based: on generated columns (ties, NaN and null, +-inf, -0.0, constant and all-missing, few and many
distinct values) cut at random into files, row groups and work units, every statistic of the report agrees with
an independent numpy/pandas/scipy oracle (tests/drift/oracle.py) under the contract's conventions, and both JSON
files are strict JSON. In this process, no Ray."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kon_ray import execution
from kon_ray.drift.check import run_check
from kon_ray.drift.config import DriftConfig
from tests.drift import oracle

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's kstwo on n = 1

NAN, INF = float("nan"), float("inf")
NULL = None  # an Arrow null (NaN is a value the file stores; both are missing)
SPECIAL = [NAN, NULL, INF, -INF, -0.0, 0.0]


def _values(pool_size: int):
    """A float column's values: from a small pool (ties) or any moderate float, and the special values."""
    pool = st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False), min_size=1,
                    max_size=pool_size, unique=True)
    return pool.flatmap(lambda p: st.sampled_from(p) | st.sampled_from(SPECIAL)
                        | st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False))


@st.composite
def column(draw, values, n: int):
    shape = draw(st.sampled_from(["mixed", "mixed", "mixed", "constant", "missing"]))
    if shape == "constant":
        return [draw(values)] * n
    if shape == "missing":
        return [draw(st.sampled_from([NAN, NULL]))] * n
    return draw(st.lists(values, min_size=n, max_size=n))


@st.composite
def side(draw, n: int):
    floats = _values(draw(st.sampled_from([2, 5, 40])))
    return {
        "x": draw(column(floats, n)),  # numeric
        "fc": draw(column(st.sampled_from([0.0, -0.0, 1.5, 2.0, NAN, NULL, INF]), n)),  # float, forced categorical
        "c": draw(column(st.sampled_from(["a", "b", "c", "d", NULL]), n)),  # strings
        "i": draw(column(st.sampled_from([1, 2, 3, 7, NULL]), n)),  # integers with nulls
    }


def _arrow(values: list, kind: str) -> pa.Array:
    """NaN stays a NaN in the file and None becomes an Arrow null; a chunk with no values at all is written as
    an Arrow null column, as pandas writes an all-None column."""
    if all(v is None for v in values):
        return pa.nulls(len(values))
    mask = np.array([v is None or (kind != "float" and v != v) for v in values])  # NaN in an int column: null
    if kind == "str":
        return pa.array([None if m else v for v, m in zip(values, mask)], pa.string())
    if kind == "int":
        return pa.array(np.array([0 if m else v for v, m in zip(values, mask)], np.int64), mask=mask)
    return pa.array(np.array([0.0 if v is None else v for v in values], np.float64), mask=mask)


KINDS = {"x": "float", "fc": "float", "c": "str", "i": "int"}


def _write(folder: str, data: dict, cuts: list, group_rows: int) -> None:
    os.makedirs(folder)
    n = len(data["x"])
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < n)), n]
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        table = pa.table({name: _arrow(values[a:b], KINDS[name]) for name, values in data.items()})
        pq.write_table(table, os.path.join(folder, f"part-{k:03d}.parquet"), row_group_size=group_rows)


def _raw(values: list) -> np.ndarray:
    return np.array([NAN if v is None else v for v in values], dtype=float)


@st.composite
def case(draw):
    n_ref, n_cur = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    return {
        "ref": draw(side(n_ref)), "cur": draw(side(n_cur)),
        "ref_cuts": draw(st.lists(st.integers(1, 39), max_size=3)),
        "cur_cuts": draw(st.lists(st.integers(1, 39), max_size=3)),
        "groups": draw(st.integers(1, 16)), "workers": draw(st.integers(1, 4)), "min_rows": draw(st.integers(1, 8)),
        "one_read": draw(st.booleans()), "ks_bins": draw(st.sampled_from([16, 2048])),
    }


def _strict(path: str) -> dict:
    def refuse(token):
        raise AssertionError(f"{path}: non-strict JSON token {token}")

    with open(path) as handle:
        return json.load(handle, parse_constant=refuse)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
@given(case())
def test_every_statistic_matches_the_oracle(case):
    cfg = DriftConfig(ks_bins=case["ks_bins"], sample_rows=1000, column_types={"fc": "categorical"})
    plan, whole = execution.plan, execution.plan_whole_columns
    try:  # few or many units (column groups and row ranges); the reference in one read or in passes
        execution.plan = lambda files, columns, **kw: plan(
            files, columns, **{**kw, "workers": case["workers"], "min_rows": case["min_rows"]})
        execution.plan_whole_columns = (lambda files, columns, **kw: whole(files, columns, **{**kw, "workers": 2})) \
            if case["one_read"] else (lambda *a, **kw: None)
        with tempfile.TemporaryDirectory() as tmp:
            _write(f"{tmp}/ref", case["ref"], case["ref_cuts"], case["groups"])
            _write(f"{tmp}/cur", case["cur"], case["cur_cuts"], case["groups"])
            report = run_check(cfg, f"{tmp}/cur", f"{tmp}/out", reference=f"{tmp}/ref")
            assert _strict(f"{tmp}/out/drift_report.json") == json.loads(json.dumps(report))
            _strict(f"{tmp}/out/reference_summary.json")
            again = run_check(cfg, f"{tmp}/cur", f"{tmp}/again", reference_summary=f"{tmp}/out/reference_summary.json")
            assert again["features"] == report["features"]  # the saved summary gives the same numbers
    finally:
        execution.plan, execution.plan_whole_columns = plan, whole
    _check(report, case["ref"], case["cur"], cfg)


def _check(report: dict, ref: dict, cur: dict, cfg: DriftConfig) -> None:
    got = {f["name"]: f for f in report["features"]}
    assert sorted(got) == ["c", "fc", "i", "x"] and report["skipped"] == []
    for name in ("x", "i"):
        r, c, f = _raw(ref[name]), _raw(cur[name]), got[name]
        assert f["type"] == "numeric"
        assert f["psi"] == pytest.approx(oracle.psi_numeric_values(r, c, cfg.psi_bins), abs=1e-9)
        d = oracle.ks_d(r, c)
        n, m = int((~np.isnan(r)).sum()), int((~np.isnan(c)).sum())
        if np.isnan(d):
            assert f["statistic"] is None and f["p_value"] is None and f["notes"]
            continue
        assert f["statistic"] - 1e-12 <= d <= f["ks_upper"] + 1e-12  # D_exact in [statistic, ks_upper]
        p = oracle.ks_pvalue(f["statistic"], n, m)  # NaN when round(n m / (n + m)) is 0: one value each side
        assert f["p_value"] is None if np.isnan(p) else f["p_value"] == pytest.approx(p, rel=1e-9, abs=1e-300)
        if len(np.unique(r[np.isfinite(r)])) <= cfg.ks_bins:  # every reference value an edge: D exact
            assert f["ks_exact"] and f["statistic"] == pytest.approx(d, abs=1e-12)
        assert f["effect_size"] == f["statistic"]
    for name in ("c", "fc"):
        if name == "c" and all(v is None for v in ref[name] + cur[name]):
            # no value in any file of either side: no kind to take, so numeric, every row missing (PSI 0)
            assert got[name]["type"] == "numeric" and got[name]["psi"] == 0.0 and got[name]["statistic"] is None
            continue
        expected = oracle.categorical_stats(np.array(ref[name], dtype=object), np.array(cur[name], dtype=object))
        f = got[name]
        assert f["type"] == "categorical" and f["dof"] == expected["dof"]
        assert f["psi"] == pytest.approx(expected["psi"], abs=1e-9)
        assert f["statistic"] == pytest.approx(expected["chi2"], rel=1e-9, abs=1e-9)
        assert f["p_value"] == pytest.approx(expected["p"], rel=1e-9, abs=1e-12)
        assert f["effect_size"] == pytest.approx(expected["cramers_v"], rel=1e-9, abs=1e-12)
    defined = [f for f in report["features"] if f["p_value"] is not None]
    if defined:
        adjusted = oracle.bh([f["p_value"] for f in defined])
        assert [f["p_value_adjusted"] for f in defined] == pytest.approx(adjusted, rel=1e-9, abs=1e-12)
    for f in report["features"]:
        assert f["severity"] == oracle.severity(f["psi"], f["p_value"], cfg.psi_moderate, cfg.psi_high, cfg.p_value)
    drifted = sum(f["severity"] in ("MODERATE", "HIGH") for f in report["features"])
    assert report["summary"]["drifted"] == drifted
    assert report["summary"]["drift_flag"] == (drifted / len(report["features"]) > cfg.drift_share)


def test_forced_categorical_float_nan_is_missing_and_negative_zero_is_zero(tmp_path):
    """The audit's case: reference [0.0]*50 + [NaN]*50, current [-0.0]*50 + [null]*50 is no drift at all."""
    ref = {"v": [0.0] * 50 + [NAN] * 50}
    cur = {"v": [-0.0] * 50 + [NULL] * 50}
    for name, data in (("ref", ref), ("cur", cur)):
        os.makedirs(tmp_path / name)
        pq.write_table(pa.table({"v": _arrow(data["v"], "float")}), tmp_path / name / "p.parquet")
    cfg = DriftConfig(column_types={"v": "categorical"})
    report = run_check(cfg, str(tmp_path / "cur"), str(tmp_path / "out"), reference=str(tmp_path / "ref"))
    (v,) = report["features"]
    assert v["psi"] == 0.0 and v["severity"] == "NONE" and v["categories"]["count"] == 2
    assert sorted(v["categories"]["reference"]) == [50, 50]
