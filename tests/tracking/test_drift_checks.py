"""Drift evidence in MLflow, against a real `mlflow server` on 127.0.0.1 (tests/tracking/conftest.py) and real
Parquet: a pipeline run stopped by the drift gate, the standalone check's one run per batch, and the drift history
page built from those runs (rendered in headless Chromium)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from kon_ray.config import CONF_DIR, load_config, to_plain
from kon_ray.context import RunContext
from kon_ray.errors import DriftGateError
from kon_ray.manifest import MANIFEST
from kon_ray.net import free_port
from kon_ray.pipeline import plan
from kon_ray.segment.state import STATE_FILE, SegmentState
from tests.chromium import CHROMIUM, dump_dom
from tests.conftest import compose_config
from tests.drift.conftest import make_frames
from tests.tracking.test_tracker import _artifacts

REPORT_FILES = {"drift_report.json", "drift_summary.txt", "drift_report.html", "reference_summary.json"}
PSI_MODERATE, PSI_HIGH = 0.1, 0.25  # conf/drift/default.yaml, restated: the test's own band rule below


def _band(psi: float) -> str:
    return "HIGH" if psi > PSI_HIGH else "MODERATE" if psi >= PSI_MODERATE else "NONE"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _write(folder: Path, frame: pd.DataFrame, parts: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(pa.Table.from_pandas(frame.iloc[a:b], preserve_index=False), folder / f"part-{i}.parquet")
    return folder


def _report_psi(folder: Path) -> dict:
    report = json.loads((folder / "drift_report.json").read_text())
    return {f["name"]: f["psi"] for f in report["features"]}


# -- 2. a run stopped by the gate -------------------------------------------------------------------------------
@pytest.mark.slow  # a drift stage on Ray, tracked over HTTP
def test_a_run_stopped_by_the_drift_gate_has_its_evidence_in_mlflow(tmp_path, mlflow_server, tiny_pola, ray_session):
    from kon_ray.run import run

    cfg = compose_config(["+dataset=POLA", f"dataset.path={tiny_pola}", "stages=[drift]", "drift.fail_on_drift=true",
                          f"tracking.uri={mlflow_server}", "tracking.experiment=gate", "tracking.log_models=false",
                          f"cache_dir={tmp_path / 'cache'}"], tmp_path)
    config, plain = load_config(cfg), to_plain(cfg)
    # the preprocess and segment stages' published folders, by hand: the drift stage reads
    # features/{train,test,current} and segment/segment_state.json
    planned = plan(RunContext(config=config, plain=plain, run_dir=config.output_dir))
    features = Path(planned.stage_paths["preprocess"])
    ref, cur = make_frames(600, 400)
    _write(features / "train", ref.iloc[:400], 2)
    _write(features / "test", ref.iloc[400:])
    _write(features / "current", cur, 2)
    (features / MANIFEST).write_text(json.dumps({"stage": "preprocess", "key": planned.stage_keys["preprocess"]}))
    # and the segment stage's (drift runs after it): estrato from `cont`, no clusters
    segment = Path(planned.stage_paths["segment"])
    segment.mkdir(parents=True)
    (segment / STATE_FILE).write_text(SegmentState(estrato_column="cont", estrato_thresholds=[0.0],
                                                   cluster_features=[], mean=[], std=[], centroids=[]).to_json())
    (segment / MANIFEST).write_text(json.dumps({"stage": "segment", "key": planned.stage_keys["segment"]}))

    with pytest.raises(DriftGateError):
        run(config, plain)

    experiment = _client(mlflow_server).get_experiment_by_name("gate")
    (logged,) = _client(mlflow_server).search_runs([experiment.experiment_id])
    report_folder = Path(planned.stage_paths["drift"])
    report = json.loads((report_folder / "drift_report.json").read_text())
    assert report["summary"]["drift_flag"] is True  # the data drifts: the gate stopped the run
    assert logged.info.status == "FAILED"
    tags, metrics = logged.data.tags, logged.data.metrics
    assert tags["stopped_by"] == "drift_gate" and tags["status"] == "stopped" and tags["drift_flag"] == "true"
    assert tags["error"].startswith("drift gate: ")
    expected_psi = {f"psi/{name}": value for name, value in _report_psi(report_folder).items()}
    assert {k: v for k, v in metrics.items() if k.startswith("psi/")} == expected_psi
    assert metrics["drift/drift_flag"] == 1.0 and metrics["drift/stopped_by_gate"] == 1.0
    assert metrics["drift/drifted"] == report["summary"]["drifted"]
    # no model registered for POLA in this experiment's store: prediction drift says so, with the reason
    assert tags["prediction_drift"] == "not_checked"
    assert tags["prediction_drift.reason"] == report["summary"]["prediction_drift"]["reason"][:5000]
    assert {f"drift/{name}" for name in REPORT_FILES} <= _artifacts(_client(mlflow_server), logged.info.run_id)


def test_prediction_drift_of_a_scored_model_becomes_metrics_and_a_tag(tmp_path):
    """The report's prediction-drift block as the tracker logs it (a hand-made report: no model to score here)."""
    from kon_ray.tracking.outputs import prediction_drift

    block = {"available": True, "severity": "MODERATE", "psi_max": 0.17,
             "features": [{"name": "domestic/p_low", "psi": 0.17, "severity": "MODERATE"},
                          {"name": "domestic/p_high", "psi": 0.02, "severity": "NONE"}]}
    (tmp_path / "drift_report.json").write_text(json.dumps({"summary": {"prediction_drift": block}}))
    metrics, tags = prediction_drift(str(tmp_path))
    assert metrics == {"prediction_drift/psi_max": 0.17, "prediction_psi/domestic/p_low": 0.17,
                       "prediction_psi/domestic/p_high": 0.02}
    assert tags == {"prediction_drift": "MODERATE"}
    assert prediction_drift(str(tmp_path / "nothing")) == ({}, {})


# -- 3. the standalone check tracks; 4. its history -------------------------------------------------------------
def _drift_cfg(*overrides: str):
    from kon_ray.drift.__main__ import register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="drift_standalone", overrides=list(overrides))


def _history_cfg(*overrides: str):
    from kon_ray.drift.history import register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="drift_history", overrides=list(overrides))


def _batches(tmp_path: Path) -> dict:
    """A reference and three batches: one like the reference, two shifted (make_frames' current window)."""
    ref, drifted = make_frames(500, 300, seed=7)
    like_ref, _ = make_frames(300, 10, seed=11)
    _, drifted_again = make_frames(10, 300, seed=13)
    return {"ref": _write(tmp_path / "ref", ref), "a": _write(tmp_path / "batch_a", like_ref),
            "b": _write(tmp_path / "batch_b", drifted), "c": _write(tmp_path / "batch_c", drifted_again)}


@pytest.mark.slow  # three checks on Ray, each tracked over HTTP, then the history in Chromium
def test_checks_of_new_batches_form_one_experiment_and_a_readable_history(tmp_path, mlflow_server, ray_session):
    from kon_ray.drift.__main__ import main
    from kon_ray.drift.history import main as history_main

    data = _batches(tmp_path)
    out = {name: tmp_path / f"out_{name}" for name in "abc"}
    track = f"tracking.uri={mlflow_server}"
    assert main(_drift_cfg(f"reference={data['ref']}", f"current={data['a']}", f"output={out['a']}",
                           "exclude=[customer_id]", track)) == 0
    summary = out["a"] / "reference_summary.json"
    assert main(_drift_cfg(f"reference_summary={summary}", f"current={data['b']}", f"output={out['b']}", track)) == 0
    assert main(_drift_cfg(f"reference_summary={summary}", f"current={data['c']}", f"output={out['c']}", track,
                           "drift.fail_on_drift=true")) == 4  # the gate stops it; the run is logged all the same

    # the reference's fingerprint, computed here: sha256 of the summary's canonical JSON
    canonical = json.dumps(json.loads(summary.read_text()), sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name(f"drift-{fingerprint[:12]}")
    assert experiment is not None and experiment.tags["reference.fingerprint"] == fingerprint
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["current"] for r in runs] == [str(data[name]) for name in "abc"]
    for run, name in zip(runs, "abc"):
        psi = _report_psi(out[name])
        logged = {k: v for k, v in run.data.metrics.items() if k.startswith("psi/")}
        assert logged == {f"psi/{k}": v for k, v in psi.items()}
        report = json.loads((out[name] / "drift_report.json").read_text())
        assert run.data.tags["drift_flag"] == str(report["summary"]["drift_flag"]).lower()
        assert run.data.metrics["drift/drift_flag"] == float(report["summary"]["drift_flag"])
        assert run.data.params["reference.fingerprint"] == fingerprint and run.data.params["drift.psi_high"] == "0.25"
        assert _artifacts(client, run.info.run_id) == REPORT_FILES
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED", "FAILED"]
    assert runs[2].data.tags["stopped_by"] == "drift_gate"
    assert runs[1].data.tags["drift_flag"] == "true"  # the shifted batch

    # the history: every point is the logged PSI, features ordered by their most recent band crossing
    page = tmp_path / "history"
    assert history_main(_history_cfg(track, f"experiment={experiment.name}", f"output={page}")) == 0
    logged = {name: _psi_series(client, runs, name) for name in _report_psi(out["a"])}
    expected_order = _expected_order(logged)
    crossed = [name for name, series in logged.items() if len({_band(v) for v in series}) > 1]
    assert crossed and set(expected_order[:len(crossed)]) == set(crossed)  # the order has something to show
    dom = _render(page / "drift_history.html", tmp_path)
    table = re.search(r'<table id="history-table">(.*?)</table>', dom, re.S).group(1)
    assert re.findall(r'<tr[^>]*><td class="l">([^<]+)</td>', table) == expected_order
    for index, name in enumerate(expected_order):
        figure = re.search(rf'<figure id="feature-{index}">(.*?)</figure>', dom, re.S).group(1)
        assert f"<b>{name}</b>" in figure
        points = [(int(b), float(v)) for b, v in re.findall(r'data-batch="(\d+)" data-psi="([^"]+)"', figure)]
        assert points == list(enumerate(logged[name]))  # exact floats, as MLflow holds them
    as_json = json.loads((page / "drift_history.json").read_text())
    assert [b["run_id"] for b in as_json["batches"]] == [r.info.run_id for r in runs]

    # bad input: an unknown experiment is a config error (2), and nothing is written
    assert history_main(_history_cfg(track, "experiment=no-such", f"output={tmp_path / 'none'}")) == 2
    assert not (tmp_path / "none" / "drift_history.html").exists()


def _psi_series(client, runs, feature: str) -> list:
    return [client.get_metric_history(run.info.run_id, f"psi/{feature}")[-1].value for run in runs]


def _expected_order(series: dict) -> list:
    """Most recent band crossing first, then latest band, then latest PSI, then name (the page's promise)."""
    def key(name):
        bands = [_band(v) for v in series[name]]
        crossed = max((i for i in range(1, len(bands)) if bands[i] != bands[i - 1]), default=-1)
        return (-crossed, -["NONE", "MODERATE", "HIGH"].index(bands[-1]), -series[name][-1], name)

    return sorted(series, key=key)


def _render(page: Path, tmp_path: Path) -> str:
    """The page's DOM after headless Chromium loaded it (no script, nothing fetched: checked as the drift report)."""

    html = page.read_text()
    # nothing to fetch or run: no script, link, src/href attribute, url() or @import (the tracking URI is text)
    assert not re.search(r"<script|<link|<iframe|<img|(src|href)\s*=|url\(|@import", html)
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return dump_dom(page, tmp_path / "profile")


# -- bad input, before Ray ---------------------------------------------------------------------------------------
def test_a_tracking_target_that_does_not_answer_stops_the_check_before_ray(tmp_path, monkeypatch):
    import kon_ray.cluster.local
    from kon_ray.drift.__main__ import main

    def no_ray(cluster):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(kon_ray.cluster.local, "init_local_ray", no_ray)
    ref, cur = make_frames(50, 50)
    _write(tmp_path / "ref", ref)
    _write(tmp_path / "cur", cur)
    dead = f"http://127.0.0.1:{free_port()}"
    args = (f"reference={tmp_path / 'ref'}", f"current={tmp_path / 'cur'}", f"output={tmp_path / 'out'}")
    assert main(_drift_cfg(*args, f"tracking.uri={dead}")) == 2
    assert main(_drift_cfg(*args, "tracking.experiment=x")) == 2  # an experiment without a URI
    assert main(_drift_cfg(*args, "tracking.uri=arn:aws:sagemaker:eu-west-1:123456789012:bucket/x")) == 2
    assert not (tmp_path / "out").exists()


def test_tracking_config_errors_name_the_key(tmp_path, caplog):
    from kon_ray.drift.__main__ import main

    ref, _ = make_frames(50, 50)
    _write(tmp_path / "ref", ref)
    dead = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level("ERROR", logger="kon_ray"):
        main(_drift_cfg(f"reference={tmp_path / 'ref'}", f"current={tmp_path / 'ref'}", f"output={tmp_path / 'o'}",
                        f"tracking.uri={dead}"))
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(f"config error: tracking.uri {dead}: no MLflow server answers")


def test_history_bands_and_the_most_recent_crossing_first():
    """Pure: bands at the exact thresholds, a batch that skipped a feature, and the page's order."""
    from kon_ray.drift.config import DriftConfig
    from kon_ray.drift.history import Batch, band, feature_histories

    cfg = DriftConfig()
    assert [band(v, cfg) for v in (0.0999, 0.1, 0.25, 0.2501)] == ["NONE", "MODERATE", "MODERATE", "HIGH"]
    series = {  # batch 0, 1, 2, 3
        "steady": [0.01, 0.02, 0.01, 0.03],          # never crosses
        "early": [0.05, 0.30, 0.31, 0.32],           # NONE -> HIGH at batch 1
        "late": [0.05, 0.06, 0.07, 0.12],            # NONE -> MODERATE at batch 3
        "gap": [0.05, None, 0.20, None],             # not checked in 1 and 3: NONE -> MODERATE at batch 2
        "back": [0.30, 0.30, 0.05, 0.04],            # HIGH -> NONE at batch 2
    }
    batches = [Batch(f"r{i}", f"b{i}", 1000 * i, "", None,
                     {name: values[i] for name, values in series.items() if values[i] is not None}) for i in range(4)]
    histories = feature_histories(batches, cfg)
    assert [h.name for h in histories] == ["late", "gap", "back", "early", "steady"]  # gap before back: MODERATE > NONE
    by_name = {h.name: h for h in histories}
    gap = by_name["gap"]
    assert (gap.last_crossing, gap.crossed_from, gap.latest) == (2, "NONE", (0.20, "MODERATE"))
    assert by_name["back"].crossed_from == "HIGH" and by_name["steady"].last_crossing is None
    assert by_name["gap"].psi == [0.05, None, 0.20, None]
