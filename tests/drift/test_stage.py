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
from kon_ray.errors import ConfigError, DriftGateError
from kon_ray.segment.state import STATE_FILE, SegmentState
from tests.conftest import compose_config
from tests.drift.conftest import make_frames


def _write(folder: str, frame: pd.DataFrame, parts: int) -> None:
    os.makedirs(folder, exist_ok=True)
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(pa.Table.from_pandas(frame.iloc[a:b], preserve_index=False), f"{folder}/part-{i}.parquet")


# the segment stage's published state (DriftCheck runs after it): estrato from `cont` (missing -> 0), two clusters
# of (cont, disc) after a log scale
STATE = SegmentState(estrato_column="cont", estrato_thresholds=[-0.5, 0.5], cluster_features=["cont", "disc"],
                     mean=[0.1, 1.3], std=[0.6, 0.4], centroids=[[-1.0, -0.5], [1.0, 0.8]], log_scale=True)


def _segments(frame: pd.DataFrame) -> pd.DataFrame:
    """An independent assignment of STATE (numpy here, not assign_segments): estrato, cluster per row."""
    cont = frame["cont"].to_numpy(np.float64)
    estrato = np.where(np.isnan(cont), 0, np.searchsorted([-0.5, 0.5], cont, side="right") + 1)
    X = np.column_stack([cont, frame["disc"].to_numpy(np.float64)])
    Z = np.nan_to_num((np.sign(X) * np.log1p(np.abs(X)) - STATE.mean) / STATE.std, nan=0.0)
    distances = ((Z[:, None, :] - np.array(STATE.centroids)[None, :, :]) ** 2).sum(axis=2)
    return pd.DataFrame({"population": frame["population"], "estrato": estrato.astype(str),
                         "cluster": distances.argmin(axis=1).astype(str)})


def _context(tmp_path, *overrides: str) -> RunContext:
    cfg = compose_config(["+dataset=POLA", *overrides], tmp_path)
    config = load_config(cfg)
    os.makedirs(os.path.join(config.output_dir, "segment"))
    with open(os.path.join(config.output_dir, "segment", STATE_FILE), "w") as f:
        f.write(STATE.to_json())
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
    # attribution by population, estrato and cluster by default: industrial every 3rd reference row (200 of 600),
    # every 2nd current row (200 of 400); the shares add up to the PSI, as the MLflow metrics do
    cat = next(f for f in report["features"] if f["name"] == "cat")
    by_population, by_estrato, by_cluster = cat["attribution"]
    assert (by_population["by"], by_estrato["by"], by_cluster["by"]) == ("population", "estrato", "cluster")
    shares = {s["value"]: (s["ref_share"], s["cur_share"]) for s in by_population["segments"]}
    assert shares == {"industrial": (pytest.approx(200 / 600), pytest.approx(200 / 400)),
                      "domestic": (pytest.approx(400 / 600), pytest.approx(200 / 400))}
    for by in ("population", "estrato", "cluster"):
        assert metrics[f"drift_mix/cat/{by}"] + metrics[f"drift_within/cat/{by}"] == pytest.approx(
            metrics["psi/cat"], abs=1e-12)
    assert report["summary"]["prediction_drift"]["available"] is False
    assert "no model available" in report["summary"]["prediction_drift"]["reason"]
    for name in ("drift_summary.txt", "drift_report.html", "reference_summary.json"):
        assert (tmp_path / "staging" / name).exists()


def test_attribution_by_the_saved_segment_state_in_both_windows(ray_session, tmp_path):
    """Issue 30 in the pipeline: every feature is attributed by population, estrato and cluster, the last two made
    from each batch by the segment stage's saved state; each split adds up to the feature's PSI, and every
    segment's rows are those of an independent assignment of that state."""
    from kon_ray.drift.stage import run

    ctx = _context(tmp_path, "drift.exclude=[const]")
    run(ctx)
    report = json.loads((tmp_path / "staging" / "drift_report.json").read_text())
    features = os.path.join(ctx.run_dir, "features")
    windows = {side: _segments(pd.concat([pd.read_parquet(f"{features}/{split}") for split in splits]))
               for side, splits in (("reference", ("train", "test")), ("current", ("current",)))}
    for feature in report["features"]:
        assert [a["by"] for a in feature["attribution"]] == ["population", "estrato", "cluster"][
            int(feature["name"] == "population"):]  # a feature is not attributed by itself
        for a in feature["attribution"]:
            assert a["mix_share"] + a["within_share"] == pytest.approx(feature["psi"], abs=1e-9)
            for side in ("reference", "current"):
                expected = windows[side][a["by"]].value_counts().to_dict()
                got = {s["value"]: s[f"{side}_rows"] for s in a["segments"] if s[f"{side}_rows"]}
                assert got == expected, (feature["name"], a["by"], side)
    assert len(windows["reference"]["estrato"].unique()) == 4 and len(windows["current"]["cluster"].unique()) == 2


def test_the_stage_needs_the_segment_stage(ray_session, tmp_path):
    from kon_ray.drift.stage import run

    ctx = _context(tmp_path)
    os.remove(os.path.join(ctx.run_dir, "segment", STATE_FILE))
    os.rmdir(os.path.join(ctx.run_dir, "segment"))
    with pytest.raises(ConfigError, match="run the 'segment' stage first"):
        run(ctx)


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
