"""The documented drift (kon_ray/synth/__init__.py) at drift=1, and its absence at drift=0."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kon_ray.synth.schema import SPECS

KS_COLUMNS = ["kwh_m06", "bill_m06", "avg_consumption_6m", "avaluo_catastral", "outstanding_balance"]


def _windows(frame, column):
    values = frame[column].astype(float)
    return values[~frame["in_window"]].dropna(), values[frame["in_window"]].dropna()


def _record_usage(frame, prefix="kwh_m"):
    return frame[[f"{prefix}{k:02d}" for k in range(1, 13)]].mean(axis=1)  # a seasonally neutral level


def test_usage_shifts_by_the_documented_45_percent(sample):
    frame = sample("POLA", drift=1.0)
    regular = (frame["segment"] == "regular") & ~frame["tariff_type"].isin(SPECS["POLA"].industrial_values)
    usage = _record_usage(frame)
    ratio = usage[regular & frame["in_window"]].median() / usage[regular & ~frame["in_window"]].median()
    assert ratio == pytest.approx(1.45, abs=0.06)
    old, new = _windows(frame, "kwh_m06")
    assert stats.ks_2samp(old, new).pvalue < 1e-6


def test_new_categories_appear_only_in_the_window(sample):
    frame = sample("POLA", drift=1.0)
    window = frame["in_window"]
    app = frame["payment_channel"] == "app"
    assert not app[~window].any() and 0.08 < app[window].mean() < 0.16
    hexing = frame["meter_brand"] == "Hexing"
    assert not hexing[~window].any() and 0.10 < hexing[window].mean() < 0.20
    gas = sample("HFAC", drift=1.0)
    diehl = gas["meter_brand"] == "Diehl"
    assert not diehl[~gas["in_window"]].any() and diehl[gas["in_window"]].any()


def test_missing_rate_and_class_mix_change(sample):
    frame = sample("POLA", drift=1.0)
    window = frame["in_window"]
    missing = frame["meter_age_years"].isna()
    assert missing[~window].mean() == pytest.approx(0.03, abs=0.01)
    assert missing[window].mean() == pytest.approx(0.15, abs=0.02)
    table = np.array([frame.loc[w, "segment"].value_counts().sort_index() for w in (~window, window)])
    assert stats.chi2_contingency(table).pvalue < 1e-6
    moroso = frame["segment"] == "moroso"
    assert moroso[window].mean() - moroso[~window].mean() > 0.05


@pytest.mark.parametrize("column", KS_COLUMNS)
def test_no_shift_without_drift(sample, column):
    old, new = _windows(sample("POLA", drift=0.0), column)
    assert stats.ks_2samp(old, new).pvalue > 0.01


def test_no_new_categories_nulls_or_mix_without_drift(sample):
    frame = sample("POLA", drift=0.0)
    window = frame["in_window"]
    for column in ("payment_channel", "meter_brand"):
        assert set(frame.loc[window, column].dropna()) == set(frame.loc[~window, column].dropna())
    assert "app" not in set(frame["payment_channel"]) and "Hexing" not in set(frame["meter_brand"])
    missing = frame["meter_age_years"].isna()
    assert abs(missing[window].mean() - missing[~window].mean()) < 0.01
    table = np.array([frame.loc[w, "segment"].value_counts().sort_index() for w in (~window, window)])
    assert stats.chi2_contingency(table).pvalue > 0.01
    usage = _record_usage(frame)
    assert stats.ks_2samp(usage[~window], usage[window]).pvalue > 0.01
