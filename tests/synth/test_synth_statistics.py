"""Properties of a 20k-row sample that later stages rely on (kon_ray/synth/__init__.py states them)."""

from __future__ import annotations

import numpy as np
import pytest

from kon_ray.synth.model import CLASSES
from kon_ray.synth.schema import NULL_SHARE, SPECS

DATASETS = tuple(SPECS)


def _industrial(frame, name):
    return frame["tariff_type"].isin(SPECS[name].industrial_values)


@pytest.mark.parametrize("name", DATASETS)
def test_both_populations_with_every_class_in_every_window(sample, name):
    frame = sample(name)
    industrial = _industrial(frame, name)
    assert 0.12 < industrial.mean() < 0.25
    for population in (industrial, ~industrial):
        for window in (frame["in_window"], ~frame["in_window"]):
            shares = frame.loc[population & window, "segment"].value_counts(normalize=True)
            assert set(shares.index) == set(CLASSES)
            assert shares.min() >= 0.03, shares.to_dict()
            assert shares.max() <= 0.45, shares.to_dict()


@pytest.mark.parametrize("name", DATASETS)
def test_estrato_thresholds_give_all_six_estratos(sample, dataset_cfg, name):
    frame = sample(name)
    domestic = frame.loc[~_industrial(frame, name), "avaluo_catastral"].dropna()
    thresholds = dataset_cfg(name).segment.estrato_thresholds  # the YAML's: the pipeline's and the generator's
    estrato = np.searchsorted(thresholds, domestic, side="right") + 1
    shares = np.bincount(estrato, minlength=7)[1:] / len(estrato)
    expected = np.array([0.22, 0.33, 0.27, 0.09, 0.05, 0.03])
    assert np.all(np.abs(shares - expected) < 0.03), shares.round(3)


@pytest.mark.parametrize("name", DATASETS)
def test_missing_rates_fall_in_their_declared_ranges(sample, dataset_cfg, name):
    reference = sample(name).loc[lambda f: ~f["in_window"]]
    with_nulls = 0
    for column in dataset_cfg(name).columns:
        low, high = NULL_SHARE.get(column, (0.0, 0.0))
        rate = reference[column].isna().mean()
        assert low <= rate <= high, f"{column}: {rate:.4f} not in [{low}, {high}]"
        with_nulls += rate > 0
    assert with_nulls >= 8


@pytest.mark.parametrize("name", DATASETS)
def test_mixed_realistic_values(sample, name):
    frame, spec = sample(name), SPECS[name]
    usage = frame[f"{spec.usage_prefix}12"].dropna()
    assert usage.max() > 50 * usage.median()  # heavy tail: large sites and spikes
    assert (usage == 0).mean() > 0.002  # vacant months
    bills = frame[[f"bill_m{k:02d}" for k in range(1, 13)]].to_numpy()
    assert 0.001 < np.nanmean(bills < 0) < 0.01  # refunds
    assert 0.01 < (frame["outstanding_balance"] < 0).mean() < 0.04  # credits in the customer's favour
    assert frame["region"].nunique() == 10 and frame["municipality"].nunique() > 250
    assert frame["payment_channel"].nunique() >= 5 and frame["meter_brand"].nunique() >= 6
    assert (frame["contract_start"] < frame["record_date"]).all()
    paid = frame["last_payment_date"].dropna()
    assert (paid <= frame.loc[paid.index, "record_date"]).all()
