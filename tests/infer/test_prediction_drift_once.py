"""Prediction drift once (issue 19, item 3): one scorer (infer's) in both places, the registered model version in the
drift stage's key and report, HIGH prediction drift raising the flag and stopping the run under the gate.

Expected PSI values are computed here from xgboost's own `Booster.predict` and the drift oracle (numpy quantiles,
pandas.cut), not from the code under test; the MLflow store is a real sqlite one."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from kon_ray import pipeline
from kon_ray.context import RunContext
from kon_ray.drift import stage as drift_stage
from kon_ray.drift.config import DriftConfig
from kon_ray.errors import DriftGateError
from kon_ray.infer import stage as infer_stage
from kon_ray.model.score import load_bundle, model_input
from kon_ray.segment.config import SegmentConfig
from kon_ray.stages import GateVerdict, StageResult
from kon_ray.tracking.config import TrackingConfig
from tests.drift import oracle
from tests.infer.conftest import STATE
from tests.train.synthetic import feature_names, synthetic_context

SHIFTED = feature_names(6)  # every model feature moved in the shifted current window


def _copy_run(scored_run, target: Path, shift: float = 0.0) -> str:
    """The scored run's features, segment state and models in `target`; with `shift`, the current split's features
    moved."""
    _, run_dir, splits, _ = scored_run
    for folder in ("features", "segment", "models"):
        shutil.copytree(os.path.join(run_dir, folder), target / folder)
    if shift:
        current = splits["current"].copy()
        current[SHIFTED] = current[SHIFTED] + np.float32(shift)
        shutil.rmtree(target / "features" / "current")
        os.makedirs(target / "features" / "current")
        current.to_parquet(target / "features" / "current" / "part-00000.parquet", index=False)
    return str(target)


def _probabilities(folder: str, frame: pd.DataFrame) -> np.ndarray:
    """Class probabilities of the model in `folder` for the frame's rows of its population, by xgboost itself."""
    bundle = load_bundle(folder)
    rows = frame[frame["population"] == bundle.population]
    return bundle.booster.predict(xgb.DMatrix(model_input(rows, bundle))).astype(np.float64)


def _expected_psi(folder: str, reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    labels = load_bundle(folder).labels
    ref, cur = _probabilities(folder, reference), _probabilities(folder, current)
    return {f"prob_{c}": oracle.psi_numeric_values(ref[:, j], cur[:, j]) for j, c in enumerate(labels)}


# --- DriftCheck: the registered model, its version in the key, named in the report ---------------------------


def _register(uri: str, folder: str, population: str, dataset: str = "SYNTH") -> str:
    """Log the model folder's booster, metadata.json and segment_state.json in one run, as the tracker does, and
    register it as <dataset>-<population>; the new version."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("kon_ray")
    booster = xgb.Booster()
    booster.load_model(os.path.join(folder, "model.ubj"))
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(booster, name=population)
        for name in ("metadata.json", "segment_state.json"):
            mlflow.log_artifact(os.path.join(folder, name), f"models/{population}")
    return str(mlflow.register_model(f"models:/{info.model_id}", f"{dataset}-{population}").version)


def _drift_ctx(tmp_path: Path, run_dir: str, uri: str, **drift) -> RunContext:
    data = tmp_path / "raw"
    if not data.exists():  # ingest is a stand-in: only the files' fingerprint matters, so write them once
        data.mkdir()
        (data / "part-0.parquet").write_bytes(b"x")
    base = synthetic_context(run_dir, "").config
    config = replace(base, dataset=replace(base.dataset, path=str(data)), tracking=TrackingConfig(uri=uri),
                     drift=DriftConfig(**drift), stages=["ingest", "preprocess", "segment", "drift"])
    return RunContext(config=config, plain=asdict(config), run_dir=run_dir)


@pytest.fixture
def real_drift_stage(monkeypatch):
    """ingest, preprocess and segment as stand-ins (preprocess and segment publish the copied features and segment
    folders), drift the real one."""
    features: dict = {}

    def make(stage):
        if stage == "drift":
            return drift_stage.run

        def run(ctx):
            if stage in ("preprocess", "segment"):
                shutil.copytree(features[stage], ctx.output_dir, dirs_exist_ok=True)
            else:
                os.makedirs(ctx.output_dir, exist_ok=True)
            return {}

        return run

    monkeypatch.setattr(pipeline, "stage_function", make)
    return features


def _report(ctx: RunContext) -> dict:
    return json.loads(Path(ctx.run_dir, "drift", "drift_report.json").read_text())


@pytest.mark.slow  # two pipeline plans and drift stages on Ray, a registry on MLflow
def test_a_new_registered_version_recomputes_the_drift_stage_and_is_named(ray_session, scored_run, tmp_path,
                                                                          real_drift_stage):
    _, _, splits, folders = scored_run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    source = _copy_run(scored_run, tmp_path / "source")
    real_drift_stage.update(preprocess=os.path.join(source, "features"), segment=os.path.join(source, "segment"))
    assert _register(uri, folders["domestic"], "domestic") == "1"

    first = pipeline.run_pipeline(_drift_ctx(tmp_path, str(tmp_path / "runs" / "a"), uri))
    assert "cached" not in first["drift"]
    block = _report(_drift_ctx(tmp_path, str(tmp_path / "runs" / "a"), uri))["summary"]["prediction_drift"]
    models = [(m["population"], m["name"], m["version"]) for m in block["models"]]
    assert models == [("domestic", "SYNTH-domestic", "1")]
    assert block["models"][0]["uri"] == "models:/SYNTH-domestic/1"
    assert "nothing registered as 'SYNTH-industrial'" in block["not_checked"]["industrial"]
    # the numbers: infer's scorer on the whole reference window (train + test) against the current window
    expected = _expected_psi(folders["domestic"], pd.concat([splits["train"], splits["test"]]), splits["current"])
    got = {f["name"]: f["psi"] for f in block["features"]}
    assert got == pytest.approx({f"domestic/{name}": psi for name, psi in expected.items()}, abs=1e-9)
    summary = Path(tmp_path, "runs", "a", "drift", "drift_summary.txt").read_text()
    assert "with SYNTH-domestic version 1" in summary

    again = pipeline.run_pipeline(_drift_ctx(tmp_path, str(tmp_path / "runs" / "b"), uri))
    assert again["drift"]["cached"] == 1 and again["preprocess"]["cached"] == 1

    assert _register(uri, folders["domestic"], "domestic") == "2"
    ctx = _drift_ctx(tmp_path, str(tmp_path / "runs" / "c"), uri)
    assert pipeline.resolve_models(ctx.config).key_material() == {"domestic": "SYNTH-domestic/2"}
    third = pipeline.run_pipeline(ctx)
    assert "cached" not in third["drift"] and third["preprocess"]["cached"] == 1
    block = _report(ctx)["summary"]["prediction_drift"]
    assert [m["version"] for m in block["models"]] == ["2"]
    assert "with SYNTH-domestic version 2" in Path(ctx.run_dir, "drift", "drift_summary.txt").read_text()

    # a pinned version is that version, whatever is newer; a version that does not exist is said, not a crash
    pinned = replace(ctx.config, drift=DriftConfig(prediction_model="1"))
    assert pipeline.resolve_models(pinned).key_material() == {"domestic": "SYNTH-domestic/1"}
    missing = replace(ctx.config, drift=DriftConfig(prediction_model="7"))
    resolution = pipeline.resolve_models(missing)
    assert resolution.key_material() is None
    reason = dict(resolution.missing)["domestic"]
    assert reason == "drift.prediction_model=7: 'SYNTH-domestic' has no version 7"


def test_an_unreachable_registry_is_no_key_material_and_the_report_says_so(ray_session, scored_run, tmp_path):
    run_dir = _copy_run(scored_run, tmp_path / "run")
    # a file where the database should be: MLflow cannot open it as a store
    (tmp_path / "broken.db").write_text("not a database")
    ctx = _drift_ctx(tmp_path, run_dir, f"sqlite:///{tmp_path}/broken.db")
    models = pipeline.with_models(pipeline.plan(ctx), "drift").models  # what the pipeline hands the stage
    assert models.key_material() is None  # planned: no exception, no model in the key
    drift_stage.run(replace(ctx, models=models, output_dir=str(tmp_path / "staging")))
    report = json.loads((tmp_path / "staging" / "drift_report.json").read_text())
    block = report["summary"]["prediction_drift"]
    assert block["available"] is False and block["models"] == []
    assert block["reason"].startswith("no model available: domestic: the model registry at sqlite:///")
    assert "could not be reached" in block["reason"]
    assert "prediction drift: not checked (no model available: domestic: the model registry" in (
        tmp_path / "staging" / "drift_summary.txt").read_text()


def test_high_prediction_drift_at_drift_check_raises_the_flag_and_the_gate(ray_session, scored_run, tmp_path):
    _, _, splits, folders = scored_run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _register(uri, folders["industrial"], "industrial")
    run_dir = _copy_run(scored_run, tmp_path / "run", shift=2.5)
    # drift_share=1: no share of drifted features can raise the flag; only prediction drift can
    ctx = _drift_ctx(tmp_path, run_dir, uri, drift_share=1.0, fail_on_drift=True)
    shifted = pd.read_parquet(Path(run_dir, "features", "current"))
    expected = _expected_psi(folders["industrial"], pd.concat([splits["train"], splits["test"]]), shifted)
    assert max(expected.values()) > 0.25  # HIGH, by the oracle
    planned = replace(ctx, models=pipeline.with_models(pipeline.plan(ctx), "drift").models)
    result = drift_stage.run(replace(planned, output_dir=str(tmp_path / "staging")))
    assert result.gate is not None and result.metrics["drift_flag"] == 1
    assert re.match(r"^prediction drift is HIGH \(\d+ of \d+ features drifted\); see ", result.gate.reason)
    report = json.loads((tmp_path / "staging" / "drift_report.json").read_text())  # written before the verdict
    summary = report["summary"]
    assert summary["drift_flag"] is True and summary["drifted_share"] <= 1.0
    block = summary["prediction_drift"]
    assert block["severity"] == "HIGH"
    assert {f["name"]: f["psi"] for f in block["features"]} == pytest.approx(
        {f"industrial/{name}": psi for name, psi in expected.items()}, abs=1e-9)


def _segments(frame: pd.DataFrame) -> pd.DataFrame:
    """An independent assignment of the run's segment state (tests/infer/conftest.py STATE, numpy here):
    population, estrato (avaluo's left-closed bins, 0 when missing) and cluster (kwh standardized, nearest centre)."""
    avaluo = frame["avaluo"].to_numpy(np.float64)
    estrato = np.where(np.isnan(avaluo), 0, np.searchsorted(STATE.estrato_thresholds, avaluo, side="right") + 1)
    z = np.nan_to_num((frame["kwh"].to_numpy(np.float64) - STATE.mean[0]) / STATE.std[0], nan=0.0)
    cluster = np.abs(z[:, None] - np.array(STATE.centroids)[None, :, 0]).argmin(axis=1)
    return pd.DataFrame({"population": frame["population"].astype(str).to_numpy(), "estrato": estrato.astype(str),
                         "cluster": cluster.astype(str)})


def test_prediction_drift_is_attributed_by_population_estrato_and_cluster(ray_session, scored_run, tmp_path):
    """Issue 30: every class probability's PSI, as every feature's, split by population, estrato and cluster (the
    run's segment state applied to both windows); the two shares add up to its PSI, and each segment's rows are
    those of an independent assignment of that state."""
    _, _, splits, folders = scored_run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _register(uri, folders["domestic"], "domestic")
    ctx = _drift_ctx(tmp_path, _copy_run(scored_run, tmp_path / "run"), uri)
    planned = replace(ctx, models=pipeline.with_models(pipeline.plan(ctx), "drift").models)
    drift_stage.run(replace(planned, output_dir=str(tmp_path / "staging")))
    report = json.loads((tmp_path / "staging" / "drift_report.json").read_text())
    windows = {"reference": _segments(pd.concat([splits["train"], splits["test"]])),
               "current": _segments(splits["current"])}
    block = report["summary"]["prediction_drift"]
    assert block["available"] and len(block["features"]) == len(load_bundle(folders["domestic"]).labels)
    for kind, entries, rows in (("feature", report["features"], lambda w: w),
                                ("prediction", block["features"], lambda w: w[w["population"] == "domestic"])):
        for entry in entries:
            bys = [a["by"] for a in entry["attribution"]]
            assert bys == [b for b in ("population", "estrato", "cluster") if b != entry["name"]], (kind, bys)
            for a in entry["attribution"]:
                assert a["mix_share"] + a["within_share"] == pytest.approx(entry["psi"], abs=1e-9)
                for side, window in windows.items():
                    expected = rows(window)[a["by"]].value_counts().to_dict()
                    got = {s["value"]: s[f"{side}_rows"] for s in a["segments"] if s[f"{side}_rows"]}
                    assert got == expected, (kind, entry["name"], a["by"], side)
    assert windows["current"]["estrato"].nunique() > 1 and windows["current"]["cluster"].nunique() == 2


# --- InferenceReporting: the run's models, test against current; the flag and the gate -----------------------


def _infer_ctx(run_dir: str, staging: str, **drift) -> RunContext:
    ctx = synthetic_context(run_dir, staging, segment=SegmentConfig())
    return replace(ctx, config=replace(ctx.config, drift=DriftConfig(**drift)))


def test_high_prediction_drift_at_inference_raises_the_flag_and_stops_after_the_reports(ray_session, scored_run,
                                                                                      tmp_path):
    _, _, splits, folders = scored_run
    run_dir = _copy_run(scored_run, tmp_path / "run", shift=2.5)
    shifted = pd.read_parquet(Path(run_dir, "features", "current"))
    expected = {p: _expected_psi(folders[p], splits["test"], shifted) for p in folders}
    high = {p: max(psi.values()) > 0.25 for p, psi in expected.items()}
    assert any(high.values())

    open_run = infer_stage.run(_infer_ctx(run_dir, str(tmp_path / "open")))
    assert open_run.metrics["drift_flag"] == 1 and open_run.gate is None  # no fail_on_drift: no verdict
    for population, psi in expected.items():
        report = json.loads((tmp_path / "open" / f"{population}.json").read_text())
        assert {f["name"]: f["psi"] for f in report["prediction_drift"]["features"]} == pytest.approx(psi, abs=1e-9)
        assert report["drift_flag"] is high[population]

    gated = infer_stage.run(_infer_ctx(run_dir, str(tmp_path / "gated"), fail_on_drift=True))
    assert gated.gate is not None and gated.gate.stage == "infer"
    assert gated.gate.reason.startswith("prediction drift is HIGH at InferenceReporting for ")
    first_high = next(p for p in ("domestic", "industrial") if high[p])
    assert gated.gate.reason.endswith(f"see {run_dir}/reports/{first_high}.html")
    assert gated.metrics["drift_flag"] == 1  # what the pipeline hands the tracker
    for population in folders:  # every report written before the verdict
        assert (tmp_path / "gated" / f"{population}.json").exists()
        assert (tmp_path / "gated" / f"{population}.html").exists()


def test_no_prediction_drift_no_flag(ray_session, scored_run, tmp_path):
    _, run_dir, splits, folders = scored_run
    expected = {p: _expected_psi(folders[p], splits["test"], splits["current"]) for p in folders}
    assert max(max(psi.values()) for psi in expected.values()) <= 0.25  # the unshifted windows, by the oracle
    result = infer_stage.run(_infer_ctx(run_dir, str(tmp_path / "staged"), fail_on_drift=True))
    assert result.metrics["drift_flag"] == 0 and result.gate is None


def test_the_pipeline_publishes_a_gated_infer_stage_and_hands_its_metrics_to_the_observer(tmp_path, monkeypatch):
    from tests.test_pipeline import _ctx

    def make(stage):
        def run(ctx):
            os.makedirs(ctx.output_dir, exist_ok=True)
            Path(ctx.out("domestic.json")).write_text("{}")
            if stage == "infer":
                return StageResult({"drift_flag": 1, "rows": 7}, GateVerdict("infer", "prediction drift is HIGH"))
            return {"rows": 3}

        return run

    class Observer:
        def __init__(self):
            self.seen = {}

        def stage_finished(self, stage, seconds, metrics, folder, gate=None):
            self.seen[stage] = (metrics, folder, gate)

    monkeypatch.setattr(pipeline, "stage_function", make)
    observer = Observer()
    ctx = _ctx(tmp_path, "a", "tracking=off")
    with pytest.raises(DriftGateError, match="^prediction drift is HIGH$"):
        pipeline.run_pipeline(ctx, observer)
    metrics, folder, gate = observer.seen["infer"]
    assert metrics == {"drift_flag": 1, "rows": 7, "stopped_by_gate": 1}
    assert gate == GateVerdict("infer", "prediction drift is HIGH")  # the verdict, from the pipeline
    assert observer.seen["train"][2] is None
    assert Path(folder, "domestic.json").exists() and not Path(folder, "_manifest.json").exists()
    assert Path(ctx.run_dir, "reports", "domestic.json").exists()  # linked into the run folder
