"""The infer tests' shared run folder: features splits and two population models trained in this process (no Ray
Train: that is tests/train's job)."""

from __future__ import annotations

import os
from dataclasses import asdict

import pandas as pd
import pytest

from kon_ray.segment.state import SegmentState
from kon_ray.train.boost import boost, xgb_params
from kon_ray.train.config import ModelConfig
from kon_ray.train.data import model_features, training_block
from kon_ray.train.model_folder import write_model_folder
from kon_ray.train.worker import build_matrices, split_batches
from tests.train.synthetic import feature_names, make_split_frame, write_features_dir

FEATURES = 6
STATE = SegmentState(estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=["kwh"],
                     mean=[50.0], std=[30.0], centroids=[[-1.0], [1.0]])
MODEL = ModelConfig(max_depth=3, eta=0.3, subsample=1.0, colsample_bytree=1.0, min_child_weight=1.0, reg_lambda=1.0,
                    tree_method="hist", max_bin=32)


def _model_folder(run_dir: str, train: pd.DataFrame, population: str) -> str:
    """models/<population>/ as the train stage writes it, from a booster trained in this process."""
    features = model_features(feature_names(FEATURES))
    classes = sorted(train.loc[train["population"] == population, "segment"].unique())
    block = training_block({c: train[c].to_numpy() for c in train}, population=population, features=features,
                           classes=classes, segment_state=asdict(STATE), id_column="customer_id",
                           target_column="segment", validation_fraction=0.2, seed=0)
    tr, va = split_batches(iter([block]))
    booster, progress = boost(xgb_params(MODEL, len(classes), 1, 0), *build_matrices(tr, va, len(features), 32, 1),
                              15, 0)
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
    write_model_folder(folder, ckpt, features, metadata, os.path.join(run_dir, "features"), seg_dir)
    return folder


@pytest.fixture(scope="package")
def scored_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    run_dir = str(root / "run")
    train = make_split_frame(800, features=FEATURES, seed=1)
    splits = {"train": train, "test": make_split_frame(300, features=FEATURES, seed=2, id_start=10_000),
              "current": make_split_frame(300, features=FEATURES, seed=3, id_start=20_000)}
    write_features_dir(run_dir, splits, features=FEATURES)
    folders = {p: _model_folder(run_dir, train, p) for p in ("domestic", "industrial")}
    return root, run_dir, splits, folders


