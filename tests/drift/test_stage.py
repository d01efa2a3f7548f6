"""DriftCheck as a pipeline stage on tiny preprocess-shaped folders, and the gate."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray.config import load_config, to_plain
from kon_ray.context import RunContext
from kon_ray.errors import DriftGateError
from tests.conftest import compose_config
from tests.drift.conftest import make_frames


def _write(folder: str, frame: pd.DataFrame, parts: int) -> None:
    os.makedirs(folder, exist_ok=True)
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(pa.Table.from_pandas(frame.iloc[a:b], preserve_index=False), f"{folder}/part-{i}.parquet")


def _context(tmp_path, *overrides: str) -> RunContext:
    cfg = compose_config(["+dataset=POLA", *overrides], tmp_path)
    config = load_config(cfg)
    ref, cur = make_frames(600, 400)
    for frame, month in ((ref, 1.0), (cur, 7.0)):
        frame["record_date"] = pd.Timestamp("2024-01-01")
        frame["segment"] = "S1"
        # preprocess's passthrough population: DriftCheck attributes each feature's PSI by it (issue 30)
        frame["population"] = np.where(np.arange(len(frame)) % (3 if month == 1.0 else 2) == 0, "industrial",
                                       "domestic")
        frame["rec_month"] = month  # a calendar feature: different windows, different months, by construction
    features = os.path.join(config.output_dir, "features")
    _write(f"{features}/train", ref.iloc[:400], 2)
    _write(f"{features}/test", ref.iloc[400:], 1)
    _write(f"{features}/current", cur, 3)
    return RunContext(config=config, plain=to_plain(cfg), run_dir=config.output_dir,
                      output_dir=str(tmp_path / "staging"))


def test_stage_writes_reports_and_returns_metrics(ray_session, tmp_path):
    from kon_ray.drift.stage import run

    ctx = _context(tmp_path, "drift.exclude=[const]")
    metrics = run(ctx).metrics
    report = json.loads((tmp_path / "staging" / "drift_report.json").read_text())
    names = [f["name"] for f in report["features"]]
    # ids, dates, target, drift.exclude and calendar features left out (population, preprocess's passthrough
    # column, is analysed like any other)
    assert sorted(names) == ["allnan", "cat", "cont", "disc", "flag", "population"]
    assert metrics["features"] == 6 and metrics["drift_flag"] == int(report["summary"]["drift_flag"])
    assert metrics["psi/cat"] == pytest.approx(next(f["psi"] for f in report["features"] if f["name"] == "cat"))
    # attribution by population by default: industrial every 3rd reference row (200 of 600), every 2nd current
    # row (200 of 400); the shares add up to the PSI, as the MLflow metrics do
    cat = next(f for f in report["features"] if f["name"] == "cat")
    (by_population,) = cat["attribution"]
    assert by_population["by"] == "population"
    shares = {s["value"]: (s["ref_share"], s["cur_share"]) for s in by_population["segments"]}
    assert shares == {"industrial": (pytest.approx(200 / 600), pytest.approx(200 / 400)),
                      "domestic": (pytest.approx(400 / 600), pytest.approx(200 / 400))}
    assert metrics["drift_mix/cat/population"] + metrics["drift_within/cat/population"] == pytest.approx(
        metrics["psi/cat"], abs=1e-12)
    assert report["summary"]["prediction_drift"]["available"] is False
    assert "no model available" in report["summary"]["prediction_drift"]["reason"]
    for name in ("drift_summary.txt", "drift_report.html", "reference_summary.json"):
        assert (tmp_path / "staging" / name).exists()


@pytest.mark.slow  # a second full check; the gate logic itself is cheap
def test_calendar_features_are_analysed_only_when_asked(ray_session, tmp_path):
    from kon_ray.drift.stage import run

    run(_context(tmp_path, "drift.exclude=[const]", "drift.calendar_features=true"))
    report = json.loads((tmp_path / "staging" / "drift_report.json").read_text())
    month = next(f for f in report["features"] if f["name"] == "rec_month")
    assert month["severity"] == "HIGH"


def test_gate_verdict_comes_after_writing_the_reports(ray_session, tmp_path):
    from kon_ray.drift.stage import run

    ctx = _context(tmp_path, "drift.fail_on_drift=true")
    # one "drift gate:" (the error's kind, added when it is printed), and the run folder's drift/, not the cache
    expected = rf"^\d+ of 7 features drifted \(share > 0.1\); see {ctx.run_dir}/drift/drift_summary.txt$"
    result = run(ctx)
    assert result.gate is not None and result.gate.stage == "drift"
    assert re.match(expected, result.gate.reason)
    assert isinstance(result.gate.error(), DriftGateError) and result.metrics["drift_flag"] == 1
    assert (tmp_path / "staging" / "drift_report.html").exists()
