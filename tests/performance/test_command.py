"""`python -m kon_ray.performance`: the same report on any layout of the same rows, bad input as one line and exit
3 with nothing published, the page in headless Chromium, and the command line once as a subprocess."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hydra import compose, initialize_config_dir

from kon_ray.config import CONF_DIR
from kon_ray.performance.__main__ import main, register
from kon_ray.performance.config import PerformanceConfig
from kon_ray.performance.html import render
from kon_ray.performance.report import REPORT_JSON, build
from tests.chromium import dump_dom, needs_chromium
from tests.conftest import REPO
from tests.performance.synthetic import draw, model, table, write

PREFIX = ["performance.label_column=label", "performance.probability_prefix=prob_"]


def _data(rng: np.random.Generator, n: int, sd: float, months: int = 1, with_labels: bool = True) -> pa.Table:
    probs = model(rng.normal(0, sd, size=n))
    return table(probs, draw(probs, rng), rng, months=months, with_labels=with_labels)


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(31)
    return _data(rng, 3000, 2.0), _data(rng, 1200, 1.0, months=3)


def _cfg(*overrides: str):
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="performance_standalone", overrides=list(overrides))


def test_same_report_on_any_layout(tables, tmp_path):
    """One file and one row group, or three files of 37-row row groups: the report is equal, bit for bit."""
    ref, cur = tables
    write(tmp_path / "ref.parquet", ref)
    write(tmp_path / "cur.parquet", cur)
    os.makedirs(tmp_path / "ref_parts")
    os.makedirs(tmp_path / "cur_parts")
    for i, (a, b) in enumerate([(0, 1000), (1000, 1001), (1001, 3000)]):
        write(tmp_path / "ref_parts" / f"part-{i}.parquet", ref.slice(a, b - a), row_group_size=37)
    for i, (a, b) in enumerate([(0, 400), (400, 1100), (1100, 1200)]):
        write(tmp_path / "cur_parts" / f"part-{i}.parquet", cur.slice(a, b - a), row_group_size=37)
    for chunking in ({"chunk_rows": 300}, {"chunk_column": "month"}):
        cfg = PerformanceConfig(label_column="label", probability_prefix="prob_", segment_columns=["estrato"],
                                **chunking)  # type: ignore[arg-type]
        one = build(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"), cfg)
        parts = build(str(tmp_path / "ref_parts"), str(tmp_path / "cur_parts"), cfg)
        for report in (one, parts):
            report.pop("reference"), report.pop("current")
        assert one == parts
    assert [c["key"] for c in one["chunks"]] == ["2024-01", "2024-02", "2024-03"]
    assert [s["value"] for s in one["segments"]] == ["1", "2", "3"]
    assert sum(s["rows"] for s in one["segments"]) == 1200


def _bad_inputs(ref: pa.Table, cur: pa.Table):
    not_one = cur.set_column(cur.schema.get_field_index("prob_a"), "prob_a",
                             pc.add(cur.column("prob_a"), 0.01))
    unknown = ref.set_column(ref.schema.get_field_index("label"), "label",
                             pa.array(["d"] + ref.column("label").to_pylist()[1:]))
    return {
        "no label column in the reference": (ref.drop_columns(["label"]), cur, [], "no label column 'label'"),
        "probabilities not summing to 1": (ref, not_one, [], "sum to 1.01, not 1 within 0.001"),
        "a prefix matching nothing": (ref, cur, ["performance.probability_prefix=score_"], "no column starts with"),
        "a class in the labels with no probability column": (unknown, cur, [], "class 'd' of label has no"
                                                                                " probability column prob_d"),
        "an empty window": (ref, cur.slice(0, 0), [], "no rows, an empty window (current)"),
    }


def test_bad_input_is_one_line_exit_3_and_nothing_published(tables, tmp_path, caplog):
    ref, cur = tables
    for i, (case, (r, c, extra, says)) in enumerate(_bad_inputs(ref, cur).items()):
        write(tmp_path / f"ref{i}.parquet", r)
        write(tmp_path / f"cur{i}.parquet", c)
        output = tmp_path / f"out{i}"
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            code = main(_cfg(f"reference={tmp_path / f'ref{i}.parquet'}", f"current={tmp_path / f'cur{i}.parquet'}",
                             f"output={output}", *PREFIX, *extra))
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert code == 3, case
        assert len(errors) == 1 and "\n" not in errors[0] and says in errors[0], (case, errors)
        assert errors[0].startswith("data error: "), errors
        assert not output.exists(), case


def test_config_errors_exit_2():
    with pytest.raises(Exception, match="at most one of performance.chunk_column and performance.chunk_rows"):
        PerformanceConfig(label_column="y", probability_prefix="p_", chunk_column="m", chunk_rows=5)
    assert main(_cfg("reference=a", "current=b", "output=c", *PREFIX, "performance.bins=1")) == 2


@needs_chromium
def test_page_in_headless_chromium(tables, tmp_path):
    ref, cur = tables
    write(tmp_path / "ref.parquet", ref)
    write(tmp_path / "cur.parquet", cur)
    cfg = PerformanceConfig(label_column="label", probability_prefix="prob_", chunk_rows=300,
                            segment_columns=["estrato"])
    report = build(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"), cfg)
    page = tmp_path / "performance_report.html"
    page.write_text(render(report))
    dom = dump_dom(page, tmp_path / "profile")
    assert dom.count('class="chart"') == 2
    assert dom.count('class="estimate"') == 2 * 4 and dom.count('class="realized"') == 2 * 4
    chunk_table = dom.split('<table class="chunks">')[1].split("</table>")[0]
    assert chunk_table.count("<tr") == 1 + 4
    assert "estrato=3" in dom and "ECE before" in dom


def test_command_line(tables, tmp_path):
    """The one subprocess test: the real entry point writes the three files and prints the summary."""
    ref, cur = tables
    write(tmp_path / "ref.parquet", ref)
    write(tmp_path / "cur.parquet", cur.drop_columns(["label"]))  # no labels: realized is null
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "kon_ray.performance", f"reference={tmp_path / 'ref.parquet'}",
         f"current={tmp_path / 'cur.parquet'}", f"output={tmp_path / 'out'}", *PREFIX,
         "performance.chunk_column=month", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    assert "performance estimated without labels" in result.stdout
    report = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    assert sorted(os.listdir(tmp_path / "out")) == ["performance_report.html", "performance_report.json",
                                                   "performance_summary.txt"]
    chunk = report["chunks"][0]
    assert set(chunk) >= {"key", "rows", "estimated", "lower", "upper", "realized", "alarm"}
    assert set(chunk["estimated"]) == {"accuracy", "macro_f1"} and chunk["realized"] is None
    assert [c["key"] for c in report["chunks"]] == ["2024-01", "2024-02", "2024-03"]
    assert {"ece_before", "ece_after", "classes"} <= set(report["calibration"])
    help_text = subprocess.run([sys.executable, "-m", "kon_ray.performance", "--help"], cwd=tmp_path,
                               capture_output=True, text=True, env=env, timeout=60).stdout
    assert help_text.startswith("usage: python -m kon_ray.performance") and "exit codes:" in help_text
