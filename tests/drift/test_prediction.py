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
