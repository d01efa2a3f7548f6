"""The tracker against a real local MLflow store (sqlite in tmp): what one pipeline run leaves in MLflow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kon_ray.config import load_config, to_plain
from kon_ray.errors import DataError, DriftGateError
from kon_ray.tracking.config import TrackingConfig
from kon_ray.tracking.registry import find_latest_model, latest_model
from kon_ray.tracking.tracker import tracked_run
from tests.conftest import compose_config
from tests.tracking.conftest import CLASSES, FEATURES, STAGE_METRICS, make_run_folder

STAGE_DIRS = {"ingest": "ingest", "preprocess": "features", "drift": "drift", "segment": "segment",
              "train": "models", "infer": "reports"}


def _config(tmp_path: Path, uri: str, experiment: str, *overrides: str):
    cfg = compose_config(["+dataset=POLA", f"tracking.uri={uri}", f"tracking.experiment={experiment}", *overrides],
                         tmp_path)
    return load_config(cfg), to_plain(cfg)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _only_run(uri: str, experiment: str):
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def _artifacts(client, run_id: str, path: str = "") -> set:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_a_full_run_is_logged_with_params_metrics_curves_artifacts_and_registered_models(tmp_path, sqlite_uri):
    config, plain = _config(tmp_path, sqlite_uri, "full", "tracking.register_models=true")
    plain["tracking"]["token"] = "s3cret-token"  # a secret pasted into the config never reaches MLflow
    run_folder = make_run_folder(tmp_path / "run")
    log_file = tmp_path / "run.log"
    log_file.write_text("12:00:00 INFO kon_ray: stage ingest: started\n")

    with tracked_run(config, plain, str(log_file)) as tracker:
        for stage, metrics in STAGE_METRICS.items():
            tracker.stage_finished(stage, 1.5, metrics, str(run_folder / STAGE_DIRS[stage]))

    run = _only_run(sqlite_uri, "full")
    client = _client(sqlite_uri)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["dataset"] == "POLA" and tags["status"] == "finished" and tags["drift_flag"] == "true"
    assert tags["populations"] == "domestic,industrial" and tags["kon_ray_version"]
    assert tags["cached.preprocess"] == "true" and tags["data.fingerprint"] == "f00d"
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] in ("true", "false")
    assert params["model.max_depth"] == "6" and params["dataset.name"] == "POLA"
    assert params["tracking.token"] == "***" and "s3cret-token" not in str(params)
    assert params["stages"].startswith('["ingest"')  # lists as JSON
    assert params["data.rows"] == "30" and params["data.fingerprint"] == "f00d" and params["data.files"] == "2"
    assert metrics["ingest/rows"] == 30 and metrics["time/drift"] == 1.5 and metrics["preprocess/cached"] == 1
    assert metrics["psi/kwh_mean"] == pytest.approx(0.31)
    assert metrics["domestic/validation_mlogloss"] == pytest.approx(0.81) and metrics["train/rows"] == 20
    assert metrics["domestic/test/macro_f1"] == pytest.approx(0.77) and metrics["infer/rows"] == 10
    assert "domestic/best_validation_mlogloss" in metrics  # from models/domestic/metadata.json
    assert "train/note" not in metrics
    curve = client.get_metric_history(run.info.run_id, "domestic/curve/validation_mlogloss")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [0, 1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "industrial/curve/train_mlogloss")) == 4

    artifacts = _artifacts(client, run.info.run_id)
    assert {"drift/drift_report.html", "drift/drift_report.json", "drift/drift_summary.txt",
            "features/feature_state.json", "features/split_summary.json", "segment/segment_state.json",
            "ingest/ingest.json", "models/domestic/metadata.json", "reports/domestic.html", "run.log"} <= artifacts
    assert not any(path.endswith((".parquet", ".ubj")) for path in artifacts)

    import mlflow.xgboost
    from mlflow.models import get_model_info

    for population in ("domestic", "industrial"):
        model_uri = f"models:/{tags[f'model_id.{population}']}"
        info = get_model_info(model_uri)
        assert [spec.name for spec in info.signature.inputs] == FEATURES
        assert info.saved_input_example_info is not None
        booster = mlflow.xgboost.load_model(model_uri)
        assert booster.num_boosted_rounds() == 4
        version = client.get_model_version(f"POLA-{population}", "1")
        assert version.run_id == run.info.run_id and f"{population}/test/macro_f1" in version.description

    model, metadata = latest_model("POLA", "domestic", config.tracking)
    assert metadata["class_labels"] == CLASSES and model.num_boosted_rounds() == 4
    assert find_latest_model("POLA", "domestic", config.tracking).reason.startswith("registered model POLA-domestic")


def test_latest_model_says_why_there_is_none(tmp_path, sqlite_uri):
    off = find_latest_model("POLA", "domestic", TrackingConfig(enabled=False))
    assert off.model is None and "tracking is off" in off.reason
    nothing = find_latest_model("HFAC", "industrial", TrackingConfig(uri=sqlite_uri, experiment="nothing-here"))
    assert nothing.model is None and "no industrial model for HFAC" in nothing.reason
    no_db = find_latest_model("POLA", "domestic", TrackingConfig(uri=f"sqlite:///{tmp_path}/none.db"))
    assert no_db.model is None and "no tracking database" in no_db.reason


@pytest.mark.parametrize(
    "error, status, tags",
    [
        (DriftGateError("3 features drifted"), "FAILED",
         {"status": "stopped", "stopped_by": "drift_gate", "error": "drift gate: 3 features drifted"}),
        (KeyboardInterrupt(), "KILLED", {"status": "interrupted", "error": "interrupted"}),
        (ValueError("boom\nsecond line"), "FAILED", {"status": "failed", "error": "ValueError: boom"}),
    ],
    ids=["drift-gate", "ctrl-c", "bug"],
)
def test_a_failed_run_is_recorded_and_ended(tmp_path, sqlite_uri, error, status, tags):
    import mlflow

    experiment = f"fail-{type(error).__name__}"
    config, plain = _config(tmp_path, sqlite_uri, experiment)
    log_file = tmp_path / "run.log"
    log_file.write_text("the run's log\n")
    with pytest.raises(type(error)):
        with tracked_run(config, plain, str(log_file)) as tracker:
            tracker.stage_finished("ingest", 0.1, {"rows": 3}, str(tmp_path / "nowhere"))
            raise error
    assert mlflow.active_run() is None  # ended, even on Ctrl-C
    run = _only_run(sqlite_uri, experiment)
    assert run.info.status == status
    assert {k: run.data.tags.get(k) for k in tags} == tags
    artifacts = _artifacts(_client(sqlite_uri), run.info.run_id)
    assert "run.log" in artifacts
    assert ("error.txt" in artifacts) == isinstance(error, ValueError)  # a bug keeps its traceback


def test_run_wires_tracking_and_records_reuse_and_data_errors(tmp_path, sqlite_uri, tiny_pola):
    """kon_ray.run.run: ingest against the real pipeline (no Ray needed), twice (the second reuses it), then bad data."""
    from kon_ray.run import run

    base = ["stages=[ingest]", f"dataset.path={tiny_pola}", f"cache_dir={tmp_path / 'cache'}"]
    for attempt in ("first", "second"):
        config, plain = _config(tmp_path / attempt, sqlite_uri, "wired", *base)
        assert run(config, plain)["ingest"]["rows"] == 24
    client = _client(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name("wired").experiment_id], order_by=["start_time ASC"])
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert "cached.ingest" not in runs[0].data.tags and runs[1].data.tags["cached.ingest"] == "true"
    assert runs[1].data.metrics["ingest/cached"] == 1 and runs[1].data.params["data.rows"] == "24"

    config, plain = _config(tmp_path / "bad", sqlite_uri, "wired-bad", "stages=[ingest]",
                            f"dataset.path={tmp_path / 'missing'}")
    with pytest.raises(DataError):
        run(config, plain)
    failed = _only_run(sqlite_uri, "wired-bad")
    assert failed.info.status == "FAILED" and failed.data.tags["error"].startswith("data error: ")
    assert os.path.exists(sqlite_uri[len("sqlite:///"):])
