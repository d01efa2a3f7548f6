"""InferenceReporting's label-free performance estimate: the report's numbers against an independent numpy
computation from the written predictions, its per-month, estrato and cluster entries, the page's section, and what
MLflow holds of it."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from kon_ray.config import load_config, to_plain
from kon_ray.infer import stage as infer_stage
from kon_ray.performance.estimator import ReferenceBins, fit_calibration
from kon_ray.segment.config import SegmentConfig
from kon_ray.tracking.tracker import tracked_run
from tests.conftest import compose_config
from tests.train.synthetic import synthetic_context

POPULATIONS = ("domestic", "industrial")
MONTHS = ("2026-01", "2026-02", "2026-03")


@pytest.fixture(scope="module")
def estimated(ray_session, scored_run, tmp_path_factory):
    """The stage run once on a copy of the shared run folder whose current split spans three months:
    (staged folder, stage metrics)."""
    _, shared, _, _ = scored_run
    root = tmp_path_factory.mktemp("performance")
    run_dir = str(root / "run")
    shutil.copytree(shared, run_dir, symlinks=True)
    current = os.path.join(run_dir, "features", "current")
    for name in os.listdir(current):
        frame = pd.read_parquet(os.path.join(current, name))
        frame["record_date"] = [dt.date(2026, 1 + i % 3, 15) for i in frame["customer_id"]]
        frame.to_parquet(os.path.join(current, name), index=False)
    ctx = synthetic_context(run_dir, str(root / "staged"), segment=SegmentConfig())
    return root / "staged", infer_stage.run(ctx).metrics


def _probs(frame: pd.DataFrame, classes) -> np.ndarray:
    return frame[[f"prob_{c}" for c in classes]].to_numpy(np.float64)


def _independent(probs: np.ndarray, calibrated: np.ndarray, actual: np.ndarray) -> dict:
    """CBPE by hand: E[j][k] = sum of calibrated p_k over the rows predicted j; accuracy trace(E)/n with the
    Poisson-binomial standard error; macro F1 = mean_k 2 E[k][k] / (predicted_k + sum_j E[j][k])."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    expected = np.zeros((k, k))
    np.add.at(expected, pred, calibrated)
    n = len(pred)
    hit = calibrated[np.arange(n), pred]
    denominator = np.bincount(pred, minlength=k) + expected.sum(axis=0)
    used = denominator > 0
    return {"accuracy": np.trace(expected) / n, "se": math.sqrt(np.sum(hit * (1 - hit))) / n,
            "macro_f1": float(np.mean(2 * np.diag(expected)[used] / denominator[used])),
            "realized": float(np.mean(pred == actual)), "rows": n}


def test_the_estimate_equals_an_independent_computation_from_the_calibrated_probabilities(estimated):
    folder, metrics = estimated
    document = json.loads((folder / "performance_report.json").read_text())
    assert set(document["populations"]) == set(POPULATIONS) and document["unavailable"] == {}
    test = pd.read_parquet(folder / "predictions" / "test")
    current = pd.read_parquet(folder / "predictions" / "current").sort_values("customer_id", ignore_index=True)
    current["month"] = [MONTHS[i % 3] for i in current["customer_id"]]
    for population in POPULATIONS:
        report = document["populations"][population]
        classes = report["classes"]
        ref = test[test["population"] == population]
        labels = pd.Index(classes).get_indexer(ref["actual"])
        assert (labels >= 0).all()
        calibration = fit_calibration(ReferenceBins(len(classes), 20).add(_probs(ref, classes), labels))
        cur = current[current["population"] == population]
        windows = [(report["overall"], cur)]
        windows += [(c, cur[cur["month"] == c["key"]]) for c in report["chunks"]]
        windows += [(s, cur[cur[s["column"]] == s["value"]]) for s in report["segments"]]
        for entry, rows in windows:
            probs = _probs(rows, classes)
            want = _independent(probs, calibration.apply(probs), pd.Index(classes).get_indexer(rows["actual"]))
            assert entry["rows"] == want["rows"]
            # fixed-point sums: at most 2^-33 per row away from the float computation
            assert entry["estimated"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-9)
            assert entry["estimated"]["macro_f1"] == pytest.approx(want["macro_f1"], abs=1e-8)
            assert entry["standard_error"]["accuracy"] == pytest.approx(want["se"], rel=1e-6)
            lower = max(0.0, want["accuracy"] - 3 * want["se"])
            upper = min(1.0, want["accuracy"] + 3 * want["se"])
            assert entry["lower"]["accuracy"] == pytest.approx(lower, abs=1e-8)
            assert entry["realized"]["accuracy"] == pytest.approx(want["realized"])
            assert entry["inside"]["accuracy"] == (lower - 1e-8 <= want["realized"] <= upper + 1e-8)
        assert [c["key"] for c in report["chunks"]] == list(MONTHS)
        assert report["chunking"] == {"by": "month", "column": "record_date", "rows": None}
        assert {s["column"] for s in report["segments"]} == {"estrato", "cluster"}
        for column in ("estrato", "cluster"):
            assert sum(s["rows"] for s in report["segments"] if s["column"] == column) == len(cur)
        assert report["rows"] == {"reference": len(ref), "current": len(cur)}
        # the change in estimated accuracy, test split -> current split, by estrato and by cluster: each segment's
        # accuracy on each side computed here from the calibrated probabilities, the shares counted here, and the
        # mix and within terms adding up to the change of the whole split
        ref_hit = calibration.apply(_probs(ref, classes))[np.arange(len(ref)), _probs(ref, classes).argmax(axis=1)]
        cur_hit = calibration.apply(_probs(cur, classes))[np.arange(len(cur)), _probs(cur, classes).argmax(axis=1)]
        assert [c["by"] for c in report["accuracy_change"]] == ["estrato", "cluster"]
        for change in report["accuracy_change"]:
            by = change["by"]
            assert change["reference"] == pytest.approx(ref_hit.mean(), abs=1e-9)
            assert change["current"] == pytest.approx(report["overall"]["estimated"]["accuracy"], abs=1e-12)
            assert change["mix"] + change["within"] == pytest.approx(change["change"], abs=1e-12)
            for seg in change["segments"]:
                in_ref, in_cur = (ref[by] == seg["value"]).to_numpy(), (cur[by] == seg["value"]).to_numpy()
                assert seg["ref_share"] == pytest.approx(in_ref.mean()) and seg["cur_share"] == pytest.approx(
                    in_cur.mean())
                if in_ref.any():
                    assert seg["ref_accuracy"] == pytest.approx(ref_hit[in_ref].mean(), abs=1e-9)
                if in_cur.any():
                    assert seg["cur_accuracy"] == pytest.approx(cur_hit[in_cur].mean(), abs=1e-9)
        assert report["alarm_bands"]["chunk_rows"] == round(len(cur) / 3)
        base = f"performance/{population}"
        assert metrics[f"{base}/estimated_accuracy"] == report["overall"]["estimated"]["accuracy"]
        assert metrics[f"{base}/realized_accuracy"] == report["overall"]["realized"]["accuracy"]
        assert metrics[f"{base}/unreliable"] == float(report["unreliable"])
        assert metrics[f"{base}/month/2026-02/estimated_accuracy"] == report["chunks"][1]["estimated"]["accuracy"]
        assert len([m for m in metrics if m.startswith(base + "/")]) < 80  # a reasonable count per population
        # the population's report carries it, and its page draws it
        assert json.loads((folder / f"{population}.json").read_text())["performance"] == report
        page = (folder / f"{population}.html").read_text()
        assert "Performance without labels" in page and page.count('data-metric="accuracy"') == 1


@pytest.mark.slow  # a fresh sqlite MLflow store (its migrations take seconds) and a whole tracked stage
def test_mlflow_holds_the_estimates_and_the_report(estimated, tmp_path):
    folder, metrics = estimated
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(["+dataset=POLA", f"tracking.uri={uri}", "tracking.experiment=performance"], tmp_path)
    with tracked_run(load_config(cfg), to_plain(cfg)) as tracker:
        tracker.stage_finished("infer", 0.1, metrics, str(folder))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("performance").experiment_id])[0]
    report = json.loads((folder / "performance_report.json").read_text())["populations"]["domestic"]
    logged = run.data.metrics
    assert logged["performance/domestic/estimated_accuracy"] == pytest.approx(
        report["overall"]["estimated"]["accuracy"])
    assert logged["performance/domestic/realized_accuracy"] == pytest.approx(report["overall"]["realized"]["accuracy"])
    segment = report["segments"][0]
    assert logged[f"performance/domestic/{segment['column']}/{segment['value']}/estimated_accuracy"] == pytest.approx(
        segment["estimated"]["accuracy"])
    assert "performance/industrial/month/2026-03/estimated_accuracy" in logged
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "reports")}
    assert "reports/performance_report.json" in artifacts
    copy = client.download_artifacts(run.info.run_id, "reports/performance_report.json", str(tmp_path))
    assert json.loads(open(copy).read())["populations"]["domestic"] == report
