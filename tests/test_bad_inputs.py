"""The bad-input corpus: malformed data and config. Each case ends with one error line naming the file, column or
key, its documented exit code (kon_ray/errors.py), and nothing published: no stage folder in the run folder, no
stage outputs in the cache.

The data cases run the command's own body (`kon_ray.run.main`, `kon_ray.drift.__main__.main`) in this process, on
the suite's one local Ray where a stage needs it: what they check (the code, the line, what is published) is
decided there. What only a real process shows (the line on the terminal, no traceback, Hydra's preflight, no run
folder) is checked through the real command line: every config case, one data case, one drift-input case.

Ingest runs without Ray (Ray starts only before the first stage that needs it). The value-level cases (infinity,
an all-null column, a constant date, a single-class population) are found by later stages: there, the stages
before the failing one publish as usual and the failing stage publishes nothing. The schema-mismatch cases go
through the standalone drift check.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from omegaconf import open_dict

from kon_ray.context import STAGE_FOLDERS
from tests.conftest import compose_config, generate_pola

ROWS = 400


@pytest.fixture(scope="module")
def good_data(tmp_path_factory) -> Path:
    return generate_pola(tmp_path_factory.mktemp("good") / "POLA", ROWS, parts=2)


def _parts(folder: Path) -> List[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _rewrite(folder: Path, change: Callable[[pa.Table], pa.Table], part: int = 1) -> None:
    path = _parts(folder)[part]
    pq.write_table(change(pq.read_table(path)), path)


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


# name -> (how to break the data (None: the data is fine), extra overrides, exit code, what the line must name)
DATA_CASES = {
    "truncated-parquet": (lambda d: _parts(d)[1].write_bytes(_parts(d)[1].read_bytes()[:500]), [], 3,
                          "part-00001.parquet: not a readable Parquet file"),
    "not-parquet": (lambda d: _parts(d)[0].write_text("customer_id,kwh\n1,2\n"), [], 3,
                    "part-00000.parquet: not a readable Parquet file"),
    "missing-column": (lambda d: _rewrite(d, lambda t: t.drop_columns(["meter_brand"])), [], 3,
                       "part-00001.parquet: column 'meter_brand' is missing"),
    "extra-column": (lambda d: _rewrite(d, lambda t: t.append_column("surprise", pa.array([1] * t.num_rows))), [],
                     3, "column 'surprise' is not declared"),
    "wrong-type": (lambda d: _rewrite(d, lambda t: _set_column(t, "avaluo_catastral",
                                                                pc.cast(t["avaluo_catastral"], pa.string()))), [],
                   3, "column 'avaluo_catastral' has type string, declared float64"),
    "string-ids": (lambda d: _rewrite(d, lambda t: _set_column(t, "customer_id", pc.cast(t["customer_id"],
                                                                                          pa.string()))), [],
                   3, "column 'customer_id' has type string, declared int64"),
    "unparseable-dates": (lambda d: _rewrite(d, lambda t: _set_column(
        t, "record_date", pa.array(["2026-13-45"] * t.num_rows))), [], 3, "column 'record_date' has type string"),
    "all-null-typed-wrong": (lambda d: _rewrite(d, lambda t: _set_column(
        t, "kwh_m01", pa.nulls(t.num_rows))), [], 3, "column 'kwh_m01' has type null, declared float64"),
    "empty-files": (lambda d: [pq.write_table(pq.read_table(p).slice(0, 0), p) for p in _parts(d)], [], 3,
                    "the dataset has no rows"),
    "duplicate-ids": (lambda d: _rewrite(d, lambda t: _set_column(t, "customer_id", pq.read_table(
        _parts(d)[0])["customer_id"].slice(0, t.num_rows))), [], 3, "column 'customer_id' has"),
    "empty-folder": (lambda d: [p.unlink() for p in _parts(d)], [], 3, "no .parquet files found"),
    "no-such-path": (lambda d: shutil.rmtree(d), [], 3, "no such file or folder (dataset.path); generate it with:"
                     " python -m kon_ray.synth +dataset=POLA dataset.path="),
}

def _in_every_part(folder: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    for part in range(len(_parts(folder))):
        _rewrite(folder, change, part)


def _constant_date(folder: Path) -> None:
    """Every part's record_date set to the first part's first date (read once, before any part is rewritten)."""
    first = pq.read_table(_parts(folder)[0])["record_date"][0]
    _in_every_part(folder, lambda t: _set_column(t, "record_date", pa.array([first] * t.num_rows)))


def _one_class_for_industrial(table: pa.Table) -> pa.Table:
    industrial = pc.is_in(table["tariff_type"], pa.array(["comercial", "industrial", "industrial_mt"]))
    return _set_column(table, "segment", pc.if_else(industrial, pa.scalar("A"), table["segment"]))


def _float_values(table: pa.Table, name: str, values: list) -> pa.Table:
    column = table[name].to_numpy(zero_copy_only=False).copy()
    column[: len(values)] = values
    return _set_column(table, name, pa.array(column, pa.float64()))


# name -> (how to break the data, overrides, exit code, what the line must name, the stage that must fail)
LATE_CASES = {
    "infinity": (lambda d: _rewrite(d, lambda t: _float_values(t, "avaluo_catastral", [np.inf, -np.inf, np.nan])),
                 ["stages=[ingest,preprocess]"], 3, "column 'avaluo_catastral' has 2 infinite values", "preprocess"),
    "all-null-column": (lambda d: _in_every_part(d, lambda t: _set_column(
        t, "meter_age_years", pa.nulls(t.num_rows, pa.float64()))), ["stages=[ingest,preprocess]"], 3,
        "column 'meter_age_years' is null in all", "preprocess"),
    "constant-date": (_constant_date,
                      ["stages=[ingest,preprocess]"], 3, "no labelled records before the current window", "preprocess"),
    "single-class-population": (lambda d: _in_every_part(d, _one_class_for_industrial),
                                ["stages=[ingest,preprocess,segment,train]"], 3,
                                "population 'industrial': a single class", "train"),
}

CONFIG_CASES = {
    "no-dataset": ([], 2, "+dataset="),
    "unknown-dataset": (["+dataset=NOPE"], 2, "dataset/NOPE"),
    "unknown-stage": (["+dataset=POLA", "stages=[ingest,trian]"], 2, "unknown stage 'trian'"),
    "unknown-key": (["+dataset=POLA", "model.depth=3"], 2, "model.depth: did you mean model.max_depth?"),
    "unknown-key-with-plus": (["+dataset=POLA", "+model.max_dept=4"], 2,
                              "model.max_dept: did you mean model.max_depth?"),
    "negative-balanced-size": (["+dataset=POLA", "split.train_per_class=-500"], 2, "split.train_per_class"),
    "thresholds-out-of-order": (["+dataset=POLA", "drift.psi_moderate=0.3", "drift.psi_high=0.2"], 2,
                                "drift.psi_moderate"),
    "wrong-value-type": (["+dataset=POLA", "model.max_depth=deep"], 2,
                         "model.max_depth: expected an integer, got 'deep'"),
    "cluster-without-address": (["+dataset=POLA", "cluster=ray"], 2, "cluster.address"),
    "unwritable-output": (["+dataset=POLA", "output_dir=/proc/kon_ray_out"], 2, "output_dir=/proc/kon_ray_out"),
}


def _kon(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "kon_ray.run", *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_one_clear_line(done: subprocess.CompletedProcess, code: int, names: str) -> None:
    assert done.returncode == code, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line or "error" in line.lower()]
    assert errors and any(names in line for line in errors), done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def _assert_nothing_published(run: Path) -> None:
    if run.exists():
        assert sorted(p.name for p in run.iterdir() if p.name not in (".hydra", "run.log")) == []
    cache = run.parent / ".cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def _broken_copy(good_data: Path, tmp_path: Path, breaks: Callable[[Path], object]) -> Path:
    data = tmp_path / "POLA"
    shutil.copytree(good_data, data)
    breaks(data)
    return data


class _Errors(logging.Handler):
    """The ERROR lines kon_ray logs (what `guarded` puts on the terminal), as their messages."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _in_process(main: Callable, cfg) -> tuple[int, List[str]]:
    """A command's body run here: its exit code and the ERROR lines it logged."""
    handler, logger = _Errors(), logging.getLogger("kon_ray")
    logger.addHandler(handler)
    try:
        code = main(cfg)
    finally:
        logger.removeHandler(handler)
    return code, handler.lines


def _assert_one_line_naming(code: int, lines: List[str], expected_code: int, names: str) -> None:
    assert code == expected_code, lines
    assert len(lines) == 1 and names in lines[0], lines


def _run_in_process(data: Path, tmp_path: Path, overrides: List[str]) -> tuple[int, List[str], Path]:
    """`python -m kon_ray.run +dataset=POLA dataset.path=DATA ...`'s body, here; its code, error lines, run folder."""
    from kon_ray.run import main

    run = tmp_path / "runs" / "run"
    cfg = compose_config(["+dataset=POLA", f"dataset.path={data}", "tracking=off", *overrides])
    with open_dict(cfg):
        cfg.output_dir = str(run)
    code, lines = _in_process(main, cfg)
    return code, lines, run


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, good_data, tmp_path):
    breaks, overrides, code, names = DATA_CASES[case]
    data = _broken_copy(good_data, tmp_path, breaks)
    got, lines, run = _run_in_process(data, tmp_path, overrides)
    _assert_one_line_naming(got, lines, code, names)
    _assert_nothing_published(run)


def test_bad_data_through_the_command_line(good_data, tmp_path):
    """The same contract as a user sees it: one line on the terminal, no traceback, nothing published."""
    breaks, _, code, names = DATA_CASES["truncated-parquet"]
    data = _broken_copy(good_data, tmp_path, breaks)
    run = tmp_path / "runs" / "run"
    done = _kon("+dataset=POLA", f"dataset.path={data}", f"output_dir={run}", f"hydra.run.dir={run}",
                "tracking=off", cwd=tmp_path)
    _assert_one_clear_line(done, code, names)
    _assert_nothing_published(run)


@pytest.mark.parametrize("case", list(LATE_CASES))
def test_bad_values_found_by_a_later_stage(case, good_data, tmp_path, ray_session):
    breaks, overrides, code, names, failing = LATE_CASES[case]
    data = _broken_copy(good_data, tmp_path, breaks)
    got, lines, run = _run_in_process(data, tmp_path, overrides)
    _assert_one_line_naming(got, lines, code, names)
    stages = overrides[0].split("[")[1].rstrip("]").split(",")
    before = stages[: stages.index(failing)]
    assert sorted(p.name for p in run.iterdir() if p.name not in (".hydra", "run.log", "ray_train", "index.json")) \
        == sorted(STAGE_FOLDERS[s] for s in before)
    # the run folder's index lists exactly the stages that finished, so a person reading it after the failure
    # sees where the run stopped
    assert sorted(json.loads((run / "index.json").read_text())["stages"]) == sorted(before)
    cache = sorted(p.name.split("-")[0] for p in (run.parent / ".cache").iterdir())
    assert cache == sorted(before)  # the failing stage left neither outputs nor a staging folder


def _drift(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "kon_ray.drift", *overrides, f"hydra.run.dir={cwd / 'hydra'}"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _drift_in_process(*overrides: str) -> tuple[int, List[str]]:
    """`python -m kon_ray.drift ...`'s body, here: its exit code and error lines."""
    from hydra import compose, initialize_config_dir

    from kon_ray.config import CONF_DIR
    from kon_ray.drift.__main__ import main, register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="drift_standalone", overrides=list(overrides))
    return _in_process(main, cfg)


def test_a_current_dataset_without_a_reference_column_is_a_data_error(good_data, tmp_path, ray_session):
    current = tmp_path / "current.parquet"
    pq.write_table(pq.read_table(_parts(good_data)[1]).drop_columns(["meter_brand"]), current)
    output = tmp_path / "report"
    code, lines = _drift_in_process(f"reference={_parts(good_data)[0]}", f"current={current}", f"output={output}",
                                    "exclude=[customer_id]")
    _assert_one_line_naming(code, lines, 3, f"{current}: column 'meter_brand' is missing (current)")
    assert not output.exists() or list(output.iterdir()) == []


def test_a_current_column_of_another_kind_is_a_data_error_like_a_missing_one(good_data, tmp_path, ray_session):
    """The drift contract's schema rule (README, issue 30 item 5): a column numeric in the reference and text in
    the current is a schema break, the most severe drift there is; it must never lower the verdict. It is a data
    error exactly as a missing current column is (the test above): exit 3, one line naming the column and both
    kinds, nothing published. drift.column_types.NAME=... compares it anyway."""
    current = tmp_path / "current.parquet"
    pq.write_table(_set_column(pq.read_table(_parts(good_data)[1]), "avaluo_catastral",
                               pc.cast(pq.read_table(_parts(good_data)[1])["avaluo_catastral"], pa.string())), current)
    output = tmp_path / "report"
    code, lines = _drift_in_process(f"reference={_parts(good_data)[0]}", f"current={current}", f"output={output}",
                                    "exclude=[customer_id]")
    assert code == 3 and len(lines) == 1, lines
    assert "'avaluo_catastral' changed kind: numeric" in lines[0] and "categorical (string) in the current" in lines[0]
    assert not output.exists() or list(output.iterdir()) == []
    code, lines = _drift_in_process(f"reference={_parts(good_data)[0]}", f"current={current}", f"output={output}",
                                    "exclude=[customer_id]", "+drift.column_types.avaluo_catastral=categorical",
                                    "drift.segment_columns=[tariff_type]")
    assert (code, lines) == (0, [])
    report = json.loads((output / "drift_report.json").read_text())
    assert "avaluo_catastral" in {feature["name"] for feature in report["features"]}
    # the standalone option of issue 30: every analysed feature but the segment column itself is attributed
    attributed = {f["name"]: [a["by"] for a in f["attribution"]] for f in report["features"]}
    assert attributed.pop("tariff_type") == [] and set(map(tuple, attributed.values())) == {("tariff_type",)}


def test_a_missing_drift_input_names_its_own_key_before_ray_starts(good_data, tmp_path):
    output = tmp_path / "report"
    done = _drift(f"reference={tmp_path / 'no-reference'}", f"current={_parts(good_data)[0]}", f"output={output}",
                  cwd=tmp_path)
    _assert_one_clear_line(done, 3, f"{tmp_path / 'no-reference'}: no such file or folder (reference)")
    assert "dataset.path" not in done.stderr
    assert not output.exists() and not (tmp_path / "hydra").exists()  # nothing written, no run folder either


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config(case, good_data, tmp_path):
    overrides, code, names = CONFIG_CASES[case]
    run = tmp_path / "runs" / "run"
    done = _kon(*overrides, f"dataset.path={good_data}" if "+dataset=POLA" in overrides else "tracking=off",
                f"hydra.run.dir={run}", cwd=tmp_path)
    _assert_one_clear_line(done, code, names)
    assert "To append" not in done.stderr
    assert not (tmp_path / "runs").exists()  # a run that never started leaves no run folder (not even run.log)


def test_the_corpus_has_at_least_twenty_distinct_cases():
    assert len(DATA_CASES) + len(LATE_CASES) + len(CONFIG_CASES) + 2 >= 20
