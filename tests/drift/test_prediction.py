"""Prediction drift on class probabilities, and the 'no model' path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kon_ray.drift.config import DriftConfig
from kon_ray.drift.prediction import find_models, prediction_drift
from kon_ray.tracking.config import TrackingConfig
from tests.drift import oracle


def test_prediction_drift_on_probabilities(ray_session):
    rng = np.random.default_rng(3)
    p_ref = rng.beta(2, 5, 800)
    p_cur = rng.beta(5, 2, 600)
    ref = pd.DataFrame({"proba_A": p_ref, "proba_B": 1 - p_ref})
    cur = pd.DataFrame({"proba_A": p_cur, "proba_B": 1 - p_cur})
    result = prediction_drift(ref, cur, DriftConfig())
    assert result["available"] and result["severity"] == "HIGH"
    got = {f["name"]: f for f in result["features"]}
    assert got["proba_A"]["psi"] == pytest.approx(oracle.psi_numeric(ref["proba_A"], cur["proba_A"]), abs=1e-12)
    assert got["proba_A"]["statistic"] == pytest.approx(oracle.ks(ref["proba_A"], cur["proba_A"]).statistic, abs=1e-12)


def test_no_model_gives_a_reason_not_an_error():
    models, reason = find_models("POLA", TrackingConfig(enabled=False))
    assert models == {} and reason.startswith("no model available:")


def test_a_registered_model_is_scored_with_its_own_segment_state():
    """A model trained on estrato/cluster gets them from the segment state it was trained with; the features
    folder holds only their raw inputs. Classes come out in the model's order, by label."""
    import numpy as np
    import pandas as pd
    import xgboost

    from kon_ray.drift.prediction import _class_labels, _input_columns, _score

    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    estrato = rng.integers(1, 4, size=200)
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 2},
                            xgboost.DMatrix(np.column_stack([x, estrato]), label=(x > 0).astype(int),
                                            feature_names=["a", "estrato"]), 3)
    state = {"estrato_column": "v", "estrato_thresholds": [10.0, 20.0, 30.0, 40.0, 50.0], "cluster_features": [],
             "mean": [], "std": [], "centroids": []}
    metadata = {"classes": {"1": "high", "0": "low"}}
    assert _class_labels(metadata) == ["low", "high"]
    assert _input_columns(["a", "estrato"], state) == ["a", "v"]
    batch = pd.DataFrame({"a": [-2.0, 2.0, 0.5], "v": [15.0, 25.0, 5.0], "population": ["domestic"] * 2 + ["x"]})
    scored = _score(batch, booster, ["a", "estrato"], _class_labels(metadata), "domestic", "population", state)
    expected = booster.predict(xgboost.DMatrix(np.array([[-2.0, 2], [2.0, 3]]), feature_names=["a", "estrato"]))
    assert list(scored.columns) == ["proba_low", "proba_high"]
    np.testing.assert_allclose(scored.to_numpy(), expected, rtol=1e-6)
