"""Training's pure parts without Ray: batches, labels, the validation split, population checks, and the
resumable boosting loop (a run resumed from a checkpoint equals one that never stopped)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from kon_ray.errors import DataError
from kon_ray.hashing import id_unit_interval
from kon_ray.train.boost import Progress, boost, parse_eval, xgb_params
from kon_ray.train.config import ModelConfig
from kon_ray.train.data import (
    check_population,
    class_count_block,
    encode_labels,
    merge_class_counts,
    model_features,
    training_block,
    validation_mask,
)
from kon_ray.train.worker import build_matrices, split_batches
from tests.train.synthetic import learnable_matrix

MODEL = ModelConfig(max_depth=3, eta=0.3, subsample=0.8, colsample_bytree=0.8, min_child_weight=1.0, reg_lambda=1.0,
                    tree_method="hist", max_bin=32)


def test_model_features_append_segments_once():
    assert model_features(["a", "b"]) == ["a", "b", "estrato", "cluster"]
    assert model_features(["a", "cluster"]) == ["a", "estrato", "cluster"]


def test_encode_labels_by_sorted_class_index_and_unknown_is_minus_one():
    assert encode_labels(np.array(["b", "a", "c", "zz"], dtype=object), ["a", "b", "c"]).tolist() == [1, 0, 2, -1]


def test_validation_mask_is_the_id_hash_below_the_fraction():
    ids = np.arange(10)
    expected = id_unit_interval(ids, salt=7 + 1) < 0.3
    assert validation_mask(ids, 0.3, seed=7).tolist() == expected.tolist()


def test_training_block_filters_population_and_builds_the_matrix():
    batch = {
        "customer_id": np.array([1, 2, 3, 4, 5]),
        "population": np.array(["domestic", "industrial", "domestic", "domestic", "industrial"], dtype=object),
        "segment": np.array(["b", "a", "a", "c", "b"], dtype=object),
        "f1": np.array([1.0, 2.0, np.nan, 4.0, 5.0], dtype=np.float32),
        "avaluo": np.array([0.5, 1.0, 2.5, np.nan, 9.0]),
    }
    state = dict(estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=[], mean=[], std=[],
                 centroids=[])
    out = training_block(batch, population="domestic", features=["f1", "estrato", "cluster"], classes=["a", "b", "c"],
                         segment_state=state, id_column="customer_id", target_column="segment",
                         validation_fraction=0.5, seed=0)
    assert out["X"].dtype == np.float32 and out["X"].shape == (3, 3)
    np.testing.assert_array_equal(out["X"], [[1.0, 1, 0], [np.nan, 3, 0], [4.0, 0, 0]])
    assert out["y"].tolist() == [1, 0, 2]
    assert out["valid"].tolist() == validation_mask(np.array([1, 3, 4]), 0.5, 0).tolist()


def test_class_counts_merge_across_blocks():
    frame = pd.DataFrame({"population": ["domestic"] * 4 + ["industrial"] * 2, "segment": list("aabbaa"),
                          "customer_id": np.arange(6)})
    valid = validation_mask(np.arange(6), 0.5, 0)
    kw = dict(target_column="segment", id_column="customer_id", validation_fraction=0.5, seed=0)
    merged = merge_class_counts(pd.concat([class_count_block(frame.iloc[:3], **kw),
                                           class_count_block(frame.iloc[3:], **kw)]))
    assert merged["domestic"]["a"] == {"train": int((~valid[:2]).sum()), "validation": int(valid[:2].sum())}
    assert sum(merged["industrial"]["a"].values()) == 2 and "b" not in merged["industrial"]


def test_population_checks_name_the_population_and_counts():
    ok = {"a": {"train": 9, "validation": 1}, "b": {"train": 5, "validation": 0}}
    assert check_population("domestic", ok, 5) == ["a", "b"]
    with pytest.raises(DataError, match=r"'industrial': a single class .*a=10"):
        check_population("industrial", {"a": {"train": 9, "validation": 1}}, 5)
    with pytest.raises(DataError, match=r"'industrial': class 'b' has fewer .*a=10, b=3"):
        check_population("industrial", {"a": {"train": 9, "validation": 1}, "b": {"train": 3, "validation": 0}}, 5)
    with pytest.raises(DataError, match="'industrial': no records"):
        check_population("industrial", {}, 5)
    with pytest.raises(DataError, match="validation split"):
        check_population("domestic", {"a": {"train": 9, "validation": 0}, "b": {"train": 9, "validation": 0}}, 5)


def test_parse_eval():
    assert parse_eval("[3]\ttrain-mlogloss:0.51\tvalidation-mlogloss:0.625") == {"train": 0.51, "validation": 0.625}


def _matrices(rows=600, features=6):
    X, y = learnable_matrix(rows, features, 3, seed=3)
    v = validation_mask(np.arange(rows), 0.2, 0)
    batches = [{"X": X[s], "y": y[s].astype(np.float32), "valid": v[s]} for s in (slice(0, 250), slice(250, None))]
    train, valid = split_batches(iter(batches))
    return build_matrices(train, valid, features, max_bin=32, nthread=1), (X, y, v)


def test_matrices_from_batches_hold_the_split_rows():
    (dtrain, dvalid), (X, y, v) = _matrices()
    assert dtrain.num_row() == int((~v).sum()) and dvalid.num_row() == int(v.sum())
    assert dtrain.get_label().tolist() == y[~v].astype(np.float32).tolist()


def test_resumed_run_builds_the_same_booster_as_an_uninterrupted_one():
    (dtrain, dvalid), _ = _matrices()
    params = xgb_params(MODEL, num_class=3, nthread=1, seed=5)
    full, full_progress = boost(params, dtrain, dvalid, 12, early_stopping_rounds=0)

    saved = {}

    def checkpoint_at_5(bst, progress):
        if progress.rounds == 5:
            saved["model"] = bst.save_raw(raw_format="ubj")
            saved["progress"] = progress.to_json()

    boost(params, dtrain, dvalid, 12, 0, on_round=checkpoint_at_5)
    restored = xgb.Booster()
    restored.load_model(saved["model"])
    resumed, progress = boost(params, dtrain, dvalid, 12, 0, booster=restored,
                              progress=Progress.from_json(saved["progress"]))
    assert progress.resumed_from == [5] and progress.rounds == 12 == resumed.num_boosted_rounds()
    assert progress.history == full_progress.history
    assert resumed.save_raw(raw_format="json") == full.save_raw(raw_format="json")


def test_early_stopping_keeps_the_best_round_and_survives_a_resume():
    (dtrain, dvalid), _ = _matrices()
    params = xgb_params(replace(MODEL, eta=1.0, max_depth=6), num_class=3, nthread=1, seed=5)  # overfits quickly
    best, progress = boost(params, dtrain, dvalid, 200, early_stopping_rounds=3)
    assert progress.stopped_early and progress.rounds == progress.best_iteration + 4
    assert best.num_boosted_rounds() == progress.best_iteration + 1
    val = progress.history["validation"]
    assert min(val) == val[progress.best_iteration] == progress.best_score


def test_heavy_row_and_column_sampling_still_resumes_to_the_same_trees():
    """XGBoost does not checkpoint its sampling RNG; with a seed per round (round_seed) a resume is exact even when
    half the rows and a third of the columns are sampled away each round."""
    rng = np.random.default_rng(0)
    X = rng.random((3000, 10))
    y = (X[:, 0] * 3 + rng.random(3000)).astype(int) % 3
    dtrain, dvalid = xgb.DMatrix(X[:2500], label=y[:2500]), xgb.DMatrix(X[2500:], label=y[2500:])
    params = xgb_params(replace(MODEL, subsample=0.5, colsample_bytree=0.7), num_class=3, nthread=1, seed=42)
    full, _ = boost(params, dtrain, dvalid, 6, 0)
    half, progress = boost(params, dtrain, dvalid, 3, 0)
    progress.final = False
    resumed, _ = boost(params, dtrain, dvalid, 6, 0, booster=xgb.Booster(model_file=half.save_raw()),
                       progress=progress)
    assert np.array_equal(resumed.predict(dvalid), full.predict(dvalid))
