"""Scoring and the InferenceReporting stage on models trained locally (no Ray Train: that is tests/train's job)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from kon_ray.errors import DataError
from kon_ray.infer import stage as infer_stage
from kon_ray.model.score import load_bundle, model_input, score_batch
from kon_ray.segment.config import SegmentConfig
from tests.train.synthetic import synthetic_context


def test_score_batch_matches_booster_predict(scored_run):
    _, _, splits, folders = scored_run
    bundles = [load_bundle(folders["domestic"]), load_bundle(folders["industrial"])]
    frame = splits["test"].head(8)
    out = score_batch({c: frame[c].to_numpy() for c in frame}, bundles, "customer_id", "segment")
    assert sorted(out["customer_id"].tolist()) == frame["customer_id"].tolist()
    for bundle in bundles:
        rows = frame[frame["population"] == bundle.population]
        expected = bundle.booster.predict(xgb.DMatrix(model_input(rows, bundle)))
        mine = out["population"] == bundle.population
        got = np.column_stack([out[f"prob_{c}"][mine] for c in bundle.labels])
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        assert out["predicted"][mine].tolist() == [bundle.labels[i] for i in expected.argmax(axis=1)]
        assert out["actual"][mine].tolist() == rows["segment"].tolist()


def test_stage_writes_predictions_and_reports(ray_session, scored_run):
    root, run_dir, splits, folders = scored_run
    ctx = synthetic_context(run_dir, str(root / "staged"), segment=SegmentConfig())
    metrics = infer_stage.run(ctx).metrics
    staged = root / "staged"
    predictions = pd.read_parquet(staged / "predictions" / "current")
    assert len(predictions) == 300 == metrics["current/rows"]
    assert sorted(predictions["customer_id"]) == sorted(splits["current"]["customer_id"])
    probs = predictions[[c for c in predictions if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    for population in ("domestic", "industrial"):
        report = json.loads((staged / f"{population}.json").read_text())
        mine = predictions[predictions["population"] == population]
        accuracy = float((mine["predicted"] == mine["actual"]).mean())  # independently, from the written rows
        assert report["splits"]["current"]["accuracy"] == pytest.approx(accuracy)
        assert report["splits"]["current"]["rows"] == len(mine)
        assert metrics[f"{population}/current/accuracy"] == pytest.approx(accuracy)
        assert {"test", "current"} == set(report["splits"])
        # every feature the model split on (fewer than the report's top 20), by average gain, ties by name
        gains = load_bundle(folders[population]).booster.get_score(importance_type="gain")
        assert [f["feature"] for f in report["feature_importance"]] == sorted(gains, key=lambda n: (-gains[n], n))
        assert [f["gain"] for f in report["feature_importance"]] == pytest.approx(
            sorted(gains.values(), reverse=True))
        assert (staged / f"{population}.html").read_text().count("<svg") >= 4


def test_a_feature_missing_at_inference_is_a_data_error(ray_session, scored_run, tmp_path):
    _, shared_run_dir, _, _ = scored_run
    run_dir = str(tmp_path / "run")  # a copy: the package's scored_run stays as the other tests read it
    shutil.copytree(shared_run_dir, run_dir, symlinks=True)
    current = os.path.join(run_dir, "features", "current")
    for name in os.listdir(current):
        frame = pd.read_parquet(os.path.join(current, name))
        frame.drop(columns=["f_003"]).to_parquet(os.path.join(current, name), index=False)
    ctx = synthetic_context(run_dir, str(tmp_path / "staged"), segment=SegmentConfig())
    with pytest.raises(DataError, match="column 'f_003' needed by the domestic/industrial model"):
        infer_stage.run(ctx)
