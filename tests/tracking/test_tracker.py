"""The tracker against a real local MLflow store (sqlite in tmp): what one pipeline run leaves in MLflow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kon_ray.config import load_config, to_plain
from kon_ray.errors import DataError
from kon_ray.segment.state import SegmentState, assign_segments
from kon_ray.stages import GateVerdict
from kon_ray.tracking import names
from kon_ray.tracking.config import TrackingConfig
from kon_ray.tracking.registry import load_bundles, resolve
from kon_ray.tracking.tracker import tracked_run
from tests.conftest import compose_config


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


def test_a_full_run_is_logged_with_params_metrics_curves_artifacts_and_registered_models(tmp_path, sqlite_uri,
                                                                                        pipeline_run):
    """The folders the real pipeline wrote, told to the tracker as the pipeline tells it."""
    import mlflow.xgboost
    import numpy as np
    import pandas as pd
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model, get_model_info

    config, plain = _config(tmp_path, sqlite_uri, "full", "tracking.register_models=true")
    plain["tracking"]["token"] = "s3cret-token"  # a secret pasted into the config never reaches MLflow
    log_file = tmp_path / "run.log"
    log_file.write_text("12:00:00 INFO kon_ray.pipeline: stage ingest: started\n")

    with tracked_run(config, plain, str(log_file)) as tracker:
        pipeline_run.log_to(tracker, seconds=1.5)

    run = _only_run(sqlite_uri, "full")
    client = _client(sqlite_uri)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    ingested = json.loads((pipeline_run.stage_folder("ingest") / "ingest.json").read_text())
    report = json.loads((pipeline_run.stage_folder("drift") / "drift_report.json").read_text())
    assert tags["dataset"] == "POLA" and tags["status"] == "finished"
    assert tags["drift_flag"] == str(report["summary"]["drift_flag"]).lower()
    # the pipeline ran with tracking off: no registry to take a model from, and the report says so
    assert tags["prediction_drift"] == "not_checked"
    assert tags["prediction_drift.reason"] == report["summary"]["prediction_drift"]["reason"]
    assert tags["populations"] == "domestic,industrial" and tags["kon_ray_version"]
    assert tags["data.fingerprint"] == ingested["fingerprint"] and "cached_stages" not in tags
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] in ("true", "false")
    assert params["model.max_depth"] == "6" and params["dataset.name"] == "POLA"
    assert params["tracking.token"] == "***" and "s3cret-token" not in str(params)
    assert params["stages"].startswith('["ingest"')  # lists as JSON
    assert {k: params[f"data.{k}"] for k in ("path", "rows", "schema_hash", "fingerprint", "files")} == {
        "path": ingested["path"], "rows": str(ingested["rows"]), "schema_hash": ingested["schema_hash"],
        "fingerprint": ingested["fingerprint"], "files": str(len(ingested["files"]))}
    assert metrics["ingest/rows"] == pipeline_run.metrics["ingest"]["rows"] == 3000 and metrics["time/drift"] == 1.5
    # every stage's numeric metrics, named as kon_ray/tracking/names.py names them
    expected = names.run_metric_names(pipeline_run.metrics)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert len([k for k in metrics if k.startswith("psi/")]) == pipeline_run.metrics["drift"]["features"]

    artifacts = _artifacts(client, run.info.run_id)
    assert {"drift/drift_report.html", "drift/drift_report.json", "drift/drift_summary.txt",
            "features/feature_state.json", "features/split_summary.json", "segment/segment_state.json",
            "ingest/ingest.json", "models/domestic/metadata.json", "models/industrial/segment_state.json",
            "reports/domestic.html", "reports/industrial.json", "run.log"} <= artifacts
    assert not any(path.endswith((".parquet", ".ubj")) for path in artifacts)

    for population in ("domestic", "industrial"):
        folder = pipeline_run.stage_folder("train") / population
        metadata = json.loads((folder / "metadata.json").read_text())
        rounds = metadata["rounds_trained"]
        curve = client.get_metric_history(run.info.run_id, f"{population}/curve/validation_mlogloss")
        assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(
            metadata["training_curve"]["validation"]["mlogloss"])
        assert len(client.get_metric_history(run.info.run_id, f"{population}/curve/train_mlogloss")) == rounds
        assert metrics[f"{population}/best_validation_mlogloss"] == pytest.approx(
            metadata["metrics"]["best_validation_mlogloss"])

        model_uri = f"models:/{tags[f'model_id.{population}']}"
        info = get_model_info(model_uri)
        assert [spec.name for spec in info.signature.inputs] == metadata["features"]
        assert metadata["features"][-2:] == ["estrato", "cluster"]  # derived as the infer stage derives them
        # the input example is the model's real input: the first test rows of the population, segments assigned by
        # the model folder's own state (not a fallback of raw feature columns)
        local = download_artifacts(artifact_uri=model_uri, dst_path=str(tmp_path / population))
        example = Model.load(local).load_input_example(local)
        rows = config.tracking.input_example_rows
        test = pd.read_parquet(pipeline_run.stage_folder("preprocess") / "test")
        test = test[test["population"] == population].head(rows)
        state = SegmentState.from_dict(json.loads((folder / "segment_state.json").read_text()))
        segments = assign_segments({name: test[name].to_numpy() for name in test.columns}, state)
        assert list(example.columns) == metadata["features"] and len(example) == rows
        np.testing.assert_allclose(example.to_numpy(float),
                                   np.column_stack([segments[name] for name in metadata["features"]]).astype(float))
        booster = mlflow.xgboost.load_model(model_uri)
        assert booster.num_boosted_rounds() == metadata["best_iteration"] + 1
        version = client.get_model_version(f"POLA-{population}", "1")
        assert version.run_id == run.info.run_id and f"{population}/test/macro_f1: " in version.description
        # the model carries its own population's metrics, and only those (not psi/*, not the other population's)
        linked = {m.key: m.value for m in client.get_logged_model(tags[f"model_id.{population}"]).metrics}
        assert linked == {k: v for k, v in metrics.items() if k.startswith(f"{population}/") and "/curve/" not in k}
        assert linked[f"{population}/test/macro_f1"] == pytest.approx(
            pipeline_run.metrics["infer"][f"{population}/test/macro_f1"])

    # what prediction drift scores with next time: the registry lookup the pipeline makes while planning
    resolution = resolve("POLA", config.tracking)
    assert [m.population for m in resolution.models] == ["domestic", "industrial"]
    bundles, failed = load_bundles(resolution, config.tracking)
    assert failed == {}
    (bundle,) = [b for b in bundles if b.population == "domestic"]
    expected_metadata = json.loads((pipeline_run.stage_folder("train") / "domestic" / "metadata.json").read_text())
    assert bundle.labels == expected_metadata["class_labels"]
    assert bundle.booster.num_boosted_rounds() == expected_metadata["best_iteration"] + 1


def test_the_registry_says_why_there_is_no_model(tmp_path, sqlite_uri):
    off = resolve("POLA", TrackingConfig(enabled=False))
    assert off.models == () and "tracking is off" in off.reason()
    nothing = resolve("HFAC", TrackingConfig(uri=sqlite_uri, experiment="nothing-here"))
    assert nothing.models == () and "nothing registered as 'HFAC-industrial'" in nothing.reason()
    no_db = resolve("POLA", TrackingConfig(uri=f"sqlite:///{tmp_path}/none.db"))
    assert no_db.models == () and "no tracking database" in no_db.reason()


@pytest.mark.parametrize(
    "error, status, tags",
    [
        (GateVerdict("drift", "3 features drifted"), "FAILED",
         {"status": "stopped", "stopped_by": "drift_gate", "error": "drift gate: 3 features drifted"}),
        (KeyboardInterrupt(), "KILLED", {"status": "interrupted", "error": "interrupted"}),
        (ValueError("boom\nsecond line"), "FAILED", {"status": "failed", "error": "ValueError: boom"}),
    ],
    ids=["drift-gate", "ctrl-c", "bug"],
)
def test_a_failed_run_is_recorded_and_ended(tmp_path, sqlite_uri, error, status, tags):
    """The gate's case as the pipeline ends it: the stopping stage's verdict to the observer, then its error."""
    import mlflow

    gate = error if isinstance(error, GateVerdict) else None
    raised = gate.error() if gate is not None else error
    experiment = f"fail-{type(raised).__name__}"
    config, plain = _config(tmp_path, sqlite_uri, experiment)
    log_file = tmp_path / "run.log"
    log_file.write_text("the run's log\n")
    with pytest.raises(type(raised)):
        with tracked_run(config, plain, str(log_file)) as tracker:
            tracker.stage_finished("ingest", 0.1, {"rows": 3}, str(tmp_path / "nowhere"), gate)
            raise raised
    assert mlflow.active_run() is None  # ended, even on Ctrl-C
    run = _only_run(sqlite_uri, experiment)
    assert run.info.status == status
    assert {k: run.data.tags.get(k) for k in tags} == tags
    artifacts = _artifacts(_client(sqlite_uri), run.info.run_id)
    assert "run.log" in artifacts
    assert ("error.txt" in artifacts) == isinstance(error, ValueError)  # a bug keeps its traceback


def test_run_wires_tracking_and_records_reuse_and_data_errors(tmp_path, sqlite_uri, tiny_pola):
    """kon_ray.run.run: ingest against the real pipeline (no Ray needed), twice (the second reuses it), then bad
    data."""
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
