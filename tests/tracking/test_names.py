"""Pure helpers: params from the config, metric names, stage-folder readers, the tracking URI, the sweep summary."""

from __future__ import annotations

import json
import math

import pytest

from kon_ray.errors import ConfigError
from kon_ray.tracking import names, outputs
from kon_ray.tracking.sweep import format_summary, summarize
from kon_ray.tracking.uri import check_uri, resolve_uri
from tests.tracking.conftest import free_port


def test_config_params_flatten_json_truncate_and_redact():
    plain = {
        "model": {"max_depth": 6, "eta": 0.1},
        "dataset": {"id_column": "customer_id", "columns": {"kwh": "float64"}, "industrial_values": ["I1", "I2"]},
        "tracking": {"uri": "http://bob:hunter2@mlflow:5000", "token": "t0k", "api_key": "k", "empty": {}},
        "aws": {"secret_key": "s", "access_key_id": "a", "password": None},
        "notes": "x" * 7000,
        "key_column": "kept",
        "tokenizer": "kept",
    }
    params = names.config_params(plain)
    assert params["model.max_depth"] == "6" and params["model.eta"] == "0.1"
    assert params["dataset.columns.kwh"] == "float64" and params["dataset.id_column"] == "customer_id"
    assert params["dataset.industrial_values"] == '["I1", "I2"]'
    assert params["tracking.token"] == params["tracking.api_key"] == params["aws.secret_key"] == "***"
    assert params["aws.password"] == "null"  # nothing to hide
    assert params["tracking.uri"] == "http://bob:***@mlflow:5000"
    assert params["key_column"] == params["tokenizer"] == "kept" and params["tracking.empty"] == "{}"
    assert len(params["notes"]) == 6000 and params["notes"].endswith("...[truncated]")


def test_overrides_are_redacted():
    assert names.redact_overrides(["+dataset=POLA", "tracking.token=abc", "+db.password=x", "model.eta=0.1"]) == [
        "+dataset=POLA", "tracking.token=***", "+db.password=***", "model.eta=0.1"]


def test_stage_metric_names_prefix_bare_keys_and_never_overwrite():
    seen: set = set()
    train = names.stage_metric_names("train", {"domestic/macro_f1": 0.8, "rounds": 12, "note": "x", "ok": True}, seen)
    infer = names.stage_metric_names("infer", {"domestic/macro_f1": 0.7, "rows": 5, "bad name!": 1}, seen)
    assert train == [("domestic/macro_f1", 0.8), ("train/rounds", 12.0), ("train/ok", 1.0)]
    assert infer == [("infer/domestic/macro_f1", 0.7), ("infer/rows", 5.0), ("infer/bad name_", 1.0)]
    assert names.run_metric_names({"drift": {"psi/kwh": 0.2, "cached": 1}}) == {"psi/kwh": 0.2, "drift/cached": 1.0}
    assert names.best_metric_keys("macro_f1", ["domestic", "industrial"]) == {
        "domestic": "domestic/macro_f1", "industrial": "industrial/macro_f1"}
    assert names.best_metric_keys("infer/rows", ["domestic"]) == {"all": "infer/rows"}


@pytest.mark.parametrize(
    "curve, expected",
    [
        ({"train": {"mlogloss": [0.8, 0.6]}, "validation": {"mlogloss": [0.9, 0.7]}},
         {"train_mlogloss": [0.8, 0.6], "validation_mlogloss": [0.9, 0.7]}),
        ({"train": {"mlogloss": [0.8, None]}, "validation": {"mlogloss": [0.9, 0.7]}},
         {"validation_mlogloss": [0.9, 0.7]}),
        ({"train": {"mlogloss": []}, "validation": {"mlogloss": []}}, {}),
    ],
    ids=["both-splits", "a-null", "no-rounds"],
)
def test_training_curves_from_metadata(curve, expected):
    """metadata.json's training_curve as the train stage writes it: {split: {metric: [one value per round]}}."""
    assert outputs.training_curves({"training_curve": curve}) == expected


def test_stage_folder_readers(tmp_path):
    """Edge cases of the readers; what they read from folders the real stages wrote is tested in test_tracker.py."""
    (tmp_path / "drift").mkdir()
    assert outputs.drift_flag(str(tmp_path / "drift")) is None  # no report: no tag
    assert outputs.prediction_drift(str(tmp_path / "drift")) == ({}, {})
    (tmp_path / "drift" / "drift_report.json").write_text(json.dumps({"summary": {"drift_flag": False}}))
    assert outputs.drift_flag(str(tmp_path / "drift")) == "false"
    (tmp_path / "drift" / "part-0.parquet").write_bytes(b"data")
    (tmp_path / "drift" / "sub").mkdir()
    (tmp_path / "drift" / "sub" / "x.html").write_text("<p>")
    assert [rel for _, rel in outputs.artifact_files(str(tmp_path / "drift"))] == ["drift_report.json", "sub/x.html"]
    assert outputs.artifact_files(str(tmp_path / "nowhere")) == []
    (tmp_path / "ingest").mkdir()
    (tmp_path / "ingest" / "ingest.json").write_text(json.dumps(
        {"path": "p", "files": ["a", "b", "c"], "rows": 9, "schema_hash": "h", "fingerprint": "f"}))
    assert outputs.dataset_fingerprint(str(tmp_path / "ingest")) == {
        "path": "p", "rows": 9, "schema_hash": "h", "fingerprint": "f", "files": 3}
    assert outputs.dataset_fingerprint(str(tmp_path / "nowhere")) == {}
    # as the train stage writes them: no best round leaves train_mlogloss_at_best None, which is not logged
    assert outputs.final_metrics({"metrics": {"best_validation_mlogloss": 0.5, "train_mlogloss_at_best": None}}) == {
        "best_validation_mlogloss": 0.5}


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_uri("sqlite:///runs/t.db") == f"sqlite:///{tmp_path}/runs/t.db"
    assert resolve_uri("sqlite:////abs/t.db") == "sqlite:////abs/t.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_uri(None) == "http://mlflow:5000"
    assert resolve_uri("http://other:80") == "http://other:80"


def test_a_sagemaker_arn_without_the_plugin_and_a_dead_server_are_config_errors(monkeypatch):
    import importlib.util

    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/kon"
    check_uri(arn)  # the plugin is in requirements.lock: the ARN is accepted
    with pytest.raises(ConfigError, match=r"^tracking.uri arn:aws:sagemaker:eu-west-1:123456789012:bucket/kon is not a"
                                          r" SageMaker MLflow ARN: expected arn:aws:sagemaker:REGION:ACCOUNT:"):
        check_uri("arn:aws:sagemaker:eu-west-1:123456789012:bucket/kon")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # an install without the lock's plugin
                        lambda name, *a: None if name == "sagemaker_mlflow" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"needs the sagemaker-mlflow plugin \(pinned in requirements.lock\)"):
        check_uri(arn)
    with pytest.raises(ConfigError, match="no MLflow server answers.*tracking=off"):
        check_uri(f"http://127.0.0.1:{free_port()}", timeout_s=2)


def _job(num, overrides, f1_dom, f1_ind=None, status="finished"):
    metrics = {"domestic/macro_f1": f1_dom}
    if f1_ind is not None:
        metrics["industrial/macro_f1"] = f1_ind
    return {"job": num, "overrides": ["+dataset=POLA", *overrides], "status": status, "error": None,
            "run_id": f"r{num}", "output_dir": f"/m/{num}", "metrics": metrics}


def test_the_sweep_summary_names_the_best_job_per_population():
    jobs = [
        _job(0, ["model.max_depth=4", "model.eta=0.05"], 0.70, 0.60),
        _job(1, ["model.max_depth=6", "model.eta=0.05"], 0.80, math.nan),
        _job(2, ["model.max_depth=8", "model.eta=0.05"], 0.99, 0.99, status="failed"),
        _job(3, ["model.max_depth=4", "model.eta=0.1"], 0.75, 0.65),
    ]
    summary = summarize(jobs, "macro_f1", "max", ["domestic", "industrial"])
    assert summary["best"]["domestic"]["job"] == 1
    assert summary["best"]["domestic"]["params"] == {"model.max_depth": "6", "model.eta": "0.05"}
    assert summary["best"]["domestic"]["metrics"] == {"domestic/macro_f1": 0.80}
    assert summary["best"]["industrial"]["job"] == 3 and summary["best"]["industrial"]["value"] == 0.65
    low = summarize(jobs, "macro_f1", "min", ["domestic", "industrial", "other"])
    assert low["best"]["domestic"]["job"] == 0 and low["best"]["other"]["value"] is None
    text = format_summary(summary)
    assert "domestic: domestic/macro_f1=0.8 job 1: model.max_depth=6 model.eta=0.05" in text
    assert "job 2 failed" in text


def test_a_server_behind_basic_auth_is_checked_with_the_uri_credentials():
    """user:password in tracking.uri is sent as basic auth (as MLflow's client sends it), not taken for the host."""
    import base64
    import http.server
    import threading

    seen = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server hook name
            seen.append((self.path, self.headers.get("Authorization")))
            ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"kon:p@ss word").decode()
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_uri(f"http://kon:p%40ss%20word@127.0.0.1:{server.server_port}/mlflow", timeout_s=5)
    finally:
        server.shutdown()
    assert seen == [("/mlflow/health", "Basic " + base64.b64encode(b"kon:p@ss word").decode())]


def test_every_tracking_hook_in_the_stage_registry_is_a_tracker_method():
    from kon_ray import stages
    from kon_ray.tracking.tracker import HOOK_PREFIX, Tracker

    hooks = {entry.name: entry.tracked for entry in stages.STAGES if entry.tracked}
    assert hooks == {"ingest": "data_fingerprint", "drift": "drift_evidence", "train": "models"}
    assert all(callable(getattr(Tracker, HOOK_PREFIX + hook, None)) for hook in hooks.values())
