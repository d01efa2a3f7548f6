"""The label is learnable from simple aggregates, but far from trivially."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from kon_ray.synth.schema import SPECS


def _aggregates(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Per-record level, trend and seasonal swing of the usage series, plus a few raw columns."""
    usage = np.log1p(frame[[f"{prefix}{k:02d}" for k in range(1, 13)]].to_numpy(float).clip(0))
    months = np.arange(12) - 5.5
    centred = usage - np.nanmean(usage, axis=1, keepdims=True)
    return pd.DataFrame(
        {
            "level": np.nanmean(usage, axis=1),
            "trend": np.nansum(centred * months, axis=1) / np.sum(months**2),
            "swing": np.nanpercentile(usage, 90, axis=1) - np.nanpercentile(usage, 10, axis=1),
            "late_payments": frame["late_payments_12m"],
            "days_past_due": frame["days_past_due"],
            "log_avaluo": np.log(frame["avaluo_catastral"]),
            "tenure_days": (pd.to_datetime(frame["record_date"]) - pd.to_datetime(frame["contract_start"])).dt.days,
            "rural": (frame["tariff_type"] == "residencial_rural").astype(int),
        }
    )


def test_a_small_boosted_model_beats_the_majority_but_not_the_noise(sample):
    frame = sample("POLA", drift=0.0)
    frame = frame[~frame["tariff_type"].isin(SPECS["POLA"].industrial_values)]  # the domestic population
    features, labels = _aggregates(frame, "kwh_m"), frame["segment"].astype("category").cat.codes.to_numpy()
    train = np.random.default_rng(0).random(len(frame)) < 0.75
    model = xgb.XGBClassifier(n_estimators=60, max_depth=4, learning_rate=0.2, tree_method="hist", n_jobs=1)
    model.fit(features[train], labels[train])
    accuracy = float((model.predict(features[~train]) == labels[~train]).mean())
    majority = float(np.bincount(labels[~train]).max() / (~train).sum())
    assert accuracy > majority + 0.25, (accuracy, majority)
    assert accuracy < 0.95, accuracy
