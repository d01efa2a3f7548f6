"""The training stage: Ray Train (forced with model.distributed_min_rows=0; both populations, 2 workers each, a
worker killed mid-run), and the one-process path that small populations take (routing, model folder, exact
resume after a lost process, determinism)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import xgboost as xgb

from kon_ray.errors import DataError
from kon_ray.segment.state import SegmentState
from kon_ray.train import stage as train_stage
from kon_ray.train.config import ModelConfig
from kon_ray.train.model_folder import FILES, read_model
from tests.train.synthetic import make_split_frame, synthetic_context, write_features_dir

# distributed_min_rows=0: every population through Ray Train, whatever its size
MODEL = ModelConfig(max_depth=3, eta=0.3, num_boost_round=8, early_stopping_rounds=4, checkpoint_frequency=2,
                    max_bin=32, max_failures=1, distributed_min_rows=0)


STATE = SegmentState(estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=["kwh"],
                     mean=[50.0], std=[30.0], centroids=[[-1.0], [1.0]])


# early stopping off: an interrupted and an uninterrupted fit must both run every round
NO_EARLY_STOP = replace(MODEL, early_stopping_rounds=0)
MODEL_FOLDER = sorted(FILES)  # feature_state.json, metadata.json, model.ubj, segment_state.json


def _prepared_run(tmp_path, train_frame, model=MODEL):
    """A run folder with features/ and segment/ published (the state written by hand: tests/segment fit it)."""
    run_dir = tmp_path / "run"
    write_features_dir(str(run_dir), {"train": train_frame}, features=8)
    (run_dir / "segment").mkdir()
    (run_dir / "segment" / "segment_state.json").write_text(STATE.to_json())
    return synthetic_context(str(run_dir), str(tmp_path / "staged"), model=model)


def lose_process(monkeypatch, population: str, after_round: int) -> None:
    """`population`'s first fit loses its process (a Ray Train worker's or the one-process task's: os._exit in the
    worker) after `after_round`; the other population's fit is left alone."""
    monkeypatch.setattr(train_stage, "lost_process_round", lambda pop: after_round if pop == population else None)


@pytest.mark.slow
def test_trains_both_populations_and_resumes_after_a_lost_worker(ray_session, tmp_path, monkeypatch):
    ctx = _prepared_run(tmp_path, make_split_frame(1500, seed=11), NO_EARLY_STOP)
    with monkeypatch.context() as patch:  # rank 0 of the domestic model's first attempt dies after round 3
        lose_process(patch, "domestic", 3)
        metrics = train_stage.train_all(ctx)

    for population in ("domestic", "industrial"):
        folder = tmp_path / "staged" / population
        assert sorted(p.name for p in folder.iterdir()) == MODEL_FOLDER
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta["features"] == [f"f_{i:03d}" for i in range(8)] + ["estrato", "cluster"]
        assert meta["class_labels"] == sorted(meta["class_labels"]) and len(meta["classes"]) == 4
        curve = meta["training_curve"]["validation"]["mlogloss"]
        assert len(curve) == meta["rounds_trained"] == len(meta["training_curve"]["train"]["mlogloss"])
        assert meta["best_iteration"] == int(np.argmin(curve))
        booster, _ = read_model(str(folder))
        assert booster.num_boosted_rounds() == meta["best_iteration"] + 1
        assert booster.feature_names == meta["features"]
        assert metrics[f"{population}/rows"] == sum(meta["class_counts"].values())
        assert meta["trained_in"] == "ray_train" and metrics[f"{population}/distributed"] == 1
    domestic = json.loads((tmp_path / "staged" / "domestic" / "metadata.json").read_text())
    industrial = json.loads((tmp_path / "staged" / "industrial" / "metadata.json").read_text())
    # the restarted worker group picked up a checkpoint (round 2 or 4) instead of starting over
    assert domestic["resumed_from_rounds"] in ([2], [4])
    assert industrial["resumed_from_rounds"] == []
    # an uninterrupted fit of the same data: the resumed model finished with the same rounds, and as good a model.
    # (Not the same trees: Ray Data hands blocks to whichever worker asks first, so each worker's rows, and with
    # them its row subsample, differ between any two distributed fits, interrupted or not.)
    train_stage.train_all(synthetic_context(str(tmp_path / "run"), str(tmp_path / "clean"), model=NO_EARLY_STOP))
    clean = json.loads((tmp_path / "clean" / "domestic" / "metadata.json").read_text())
    assert clean["resumed_from_rounds"] == []
    assert domestic["rounds_trained"] == clean["rounds_trained"] == NO_EARLY_STOP.num_boost_round
    # as good a model: the resumed fit kept learning after its restart, and two distributed fits of 1500 rows land
    # within a few percent of each other (5.1% apart in one CI run), so the bound is 15%
    resumed_curve = domestic["training_curve"]["validation"]["mlogloss"]
    assert resumed_curve[-1] < resumed_curve[domestic["resumed_from_rounds"][0]] < resumed_curve[0]
    assert resumed_curve[-1] == pytest.approx(clean["training_curve"]["validation"]["mlogloss"][-1], rel=0.15)
    # the Ray Train scratch folders are gone once the models are written; their storage path stays, empty
    assert (tmp_path / "run" / "ray_train").is_dir() and list((tmp_path / "run" / "ray_train").iterdir()) == []


@pytest.mark.slow
def test_small_population_trains_in_one_process_resumes_exactly_and_large_goes_to_ray_train(ray_session, tmp_path,
                                                                                            monkeypatch):
    frame = make_split_frame(1500, seed=11)
    domestic_rows = int((frame["population"] == "domestic").sum())
    industrial_rows = len(frame) - domestic_rows
    assert industrial_rows < domestic_rows
    # the threshold between the two: industrial trains in one process, domestic with Ray Train
    mixed = replace(NO_EARLY_STOP, distributed_min_rows=domestic_rows)
    assert train_stage.distributed(domestic_rows, mixed.distributed_min_rows)
    assert not train_stage.distributed(industrial_rows, mixed.distributed_min_rows)
    assert train_stage.distributed(1, 0)  # 0 forces Ray Train
    ctx = _prepared_run(tmp_path, frame, mixed)
    with monkeypatch.context() as patch:  # industrial's one-process fit dies after round 3: retried from round 4
        lose_process(patch, "industrial", 3)
        metrics = train_stage.train_all(ctx)
    meta = {pop: json.loads((tmp_path / "staged" / pop / "metadata.json").read_text())
            for pop in ("domestic", "industrial")}
    assert meta["domestic"]["trained_in"] == "ray_train" and metrics["domestic/distributed"] == 1
    assert meta["industrial"]["trained_in"] == "one_process" and metrics["industrial/distributed"] == 0
    assert meta["industrial"]["resumed_from_rounds"] == [4]
    for pop in ("domestic", "industrial"):
        assert sorted(p.name for p in (tmp_path / "staged" / pop).iterdir()) == MODEL_FOLDER
        assert meta[pop]["rounds_trained"] == NO_EARLY_STOP.num_boost_round
    # checkpoints (ray_train/) are removed once the model folders are written
    assert list((tmp_path / "run" / "ray_train").iterdir()) == []

    # both small now: one process each, uninterrupted, twice. A one-process fit with the same seed is
    # deterministic, and the resumed fit above built exactly the trees of an uninterrupted one
    small = replace(NO_EARLY_STOP, distributed_min_rows=10**9)
    runs = []
    for name in ("clean1", "clean2"):
        train_stage.train_all(synthetic_context(str(tmp_path / "run"), str(tmp_path / name), model=small))
        runs.append({pop: json.loads((tmp_path / name / pop / "metadata.json").read_text())
                     for pop in ("domestic", "industrial")})
        assert runs[-1]["domestic"]["trained_in"] == runs[-1]["industrial"]["trained_in"] == "one_process"
    assert (tmp_path / "clean1" / "domestic" / "model.ubj").read_bytes() == \
        (tmp_path / "clean2" / "domestic" / "model.ubj").read_bytes()
    assert runs[0]["industrial"]["training_curve"] == meta["industrial"]["training_curve"]
    resumed, _ = read_model(str(tmp_path / "staged" / "industrial"))
    clean, _ = read_model(str(tmp_path / "clean1" / "industrial"))
    X = frame[[f"f_{i:03d}" for i in range(8)]].to_numpy(np.float32)
    X = np.hstack([X, np.zeros((len(X), 2), np.float32)])
    np.testing.assert_array_equal(resumed.inplace_predict(X), clean.inplace_predict(X))


def test_single_class_population_fails_before_ray_train(ray_session, tmp_path):
    frame = make_split_frame(200, seed=2)
    frame.loc[frame["population"] == "industrial", "segment"] = "regular"
    ctx = _prepared_run(tmp_path, frame)
    n = int((frame["population"] == "industrial").sum())
    with pytest.raises(DataError, match=rf"population 'industrial': a single class .*regular={n}"):
        train_stage.run(ctx)
    assert not (tmp_path / "run" / "ray_train").exists()


def test_model_and_metadata_mismatch_is_a_data_error(tmp_path):
    X, y = np.random.default_rng(0).random((30, 3)), np.arange(30) % 2
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, label=y), 2)
    booster.save_model(str(tmp_path / "model.ubj"))
    (tmp_path / "metadata.json").write_text(json.dumps({"features": ["a", "b"]}))
    with pytest.raises(DataError, match="expects 3 features but metadata.json lists 2"):
        read_model(str(tmp_path))
    (tmp_path / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a readable XGBoost model"):
        read_model(str(tmp_path))
