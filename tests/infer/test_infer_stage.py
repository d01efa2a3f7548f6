"""Scoring and the InferenceReporting stage on models trained locally (no Ray Train: that is tests/train's job)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from kon_ray.errors import DataError
from kon_ray.infer import stage as infer_stage
from kon_ray.infer.score import load_bundle, model_input, score_batch
from kon_ray.segment.config import SegmentConfig
from kon_ray.segment.state import SegmentState
from kon_ray.train import stage as train_stage
from kon_ray.train.boost import boost, xgb_params
from kon_ray.train.data import model_features, training_block
from kon_ray.train.synthetic import feature_names, make_split_frame, synthetic_context, write_features_dir
from kon_ray.train.worker import build_matrices, split_batches

FEATURES = 6
STATE = SegmentState(estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=["kwh"],
                     mean=[50.0], std=[30.0], centroids=[[-1.0], [1.0]])
MODEL = dict(max_depth=3, eta=0.3, subsample=1.0, colsample_bytree=1.0, min_child_weight=1.0, reg_lambda=1.0,
             tree_method="hist", max_bin=32)


def _model_folder(run_dir: str, train: pd.DataFrame, population: str) -> str:
    """models/<population>/ as the train stage writes it, from a booster trained in this process."""
    features = model_features(feature_names(FEATURES))
    classes = sorted(train.loc[train["population"] == population, "segment"].unique())
    block = training_block({c: train[c].to_numpy() for c in train}, population=population, features=features,
                           classes=classes, segment_state=asdict(STATE), id_column="customer_id",
                           target_column="segment", validation_fraction=0.2, seed=0)
    tr, va = split_batches(iter([block]))
    booster, progress = boost(xgb_params(MODEL, len(classes), 1, 0), *build_matrices(tr, va, len(features), 32, 1), 15, 0)
    ckpt = os.path.join(run_dir, "ckpt", population)
    os.makedirs(ckpt)
    booster.save_model(os.path.join(ckpt, "model.ubj"))
    counts = train.loc[train["population"] == population, "segment"].value_counts()
    metadata = {"population": population, "features": features, "class_labels": classes,
                "class_counts": {c: int(counts[c]) for c in classes}, "best_iteration": progress.best_iteration,
                "rounds_trained": progress.rounds}
    folder = os.path.join(run_dir, "models", population)
    seg_dir = os.path.join(run_dir, "segment")
    os.makedirs(seg_dir, exist_ok=True)
    with open(os.path.join(seg_dir, "segment_state.json"), "w") as out:
        out.write(STATE.to_json())
    train_stage._write_model_folder(folder, ckpt, features, metadata, os.path.join(run_dir, "features"), seg_dir)
    return folder


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    run_dir = str(root / "run")
    train = make_split_frame(800, features=FEATURES, seed=1)
    splits = {"train": train, "test": make_split_frame(300, features=FEATURES, seed=2, id_start=10_000),
              "current": make_split_frame(300, features=FEATURES, seed=3, id_start=20_000)}
    write_features_dir(run_dir, splits, features=FEATURES)
    folders = {p: _model_folder(run_dir, train, p) for p in ("domestic", "industrial")}
    return root, run_dir, splits, folders


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
    root, run_dir, splits, _ = scored_run
    ctx = synthetic_context(run_dir, str(root / "staged"), segment=SegmentConfig())
    metrics = infer_stage.run(ctx)
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
        assert len(report["feature_importance"]) <= 20
        assert (staged / f"{population}.html").read_text().count("<svg") >= 4


def test_a_feature_missing_at_inference_is_a_data_error(ray_session, scored_run, tmp_path):
    root, run_dir, splits, _ = scored_run
    current = os.path.join(run_dir, "features", "current")
    saved = {f: pd.read_parquet(os.path.join(current, f)) for f in os.listdir(current)}
    try:
        for name, frame in saved.items():
            frame.drop(columns=["f_003"]).to_parquet(os.path.join(current, name), index=False)
        ctx = synthetic_context(run_dir, str(tmp_path / "staged"), segment=SegmentConfig())
        with pytest.raises(DataError, match="column 'f_003' needed by the domestic/industrial model"):
            infer_stage.run(ctx)
    finally:
        for name, frame in saved.items():
            frame.to_parquet(os.path.join(current, name), index=False)
