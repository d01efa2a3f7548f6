"""Each derivation family on tiny frames, against numpy or a hand count."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kon_ray.errors import DataError
from kon_ray.features import derive as d
from kon_ray.features.spec import build_spec
from tests.features.data import dataset_config, raw_frame

NAN = np.nan
# 5 rows x 6 months, newest first per row; the matrix functions take (months x rows), hence .T
ROWS = np.array(
    [
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        [6.0, NAN, 4.0, NAN, 2.0, 1.0],
        [NAN, NAN, NAN, NAN, NAN, NAN],
        [0.0, -2.0, 5.0, 5.0, 5.0, 5.0],
        [NAN, 3.0, NAN, NAN, NAN, NAN],
    ]
)
M = ROWS.T


@pytest.mark.parametrize("w", [3, 6])
def test_window_stats_match_numpy_nan_functions(w):
    stats = d.window_stats(M, w)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = {
            "mean": np.nanmean(ROWS[:, :w], axis=1),
            "std": np.nanstd(ROWS[:, :w], axis=1),
            "min": np.nanmin(ROWS[:, :w], axis=1),
            "max": np.nanmax(ROWS[:, :w], axis=1),
        }
    for key, values in expected.items():
        np.testing.assert_allclose(stats[key], values, rtol=1e-12, equal_nan=True, err_msg=key)


def test_slope_matches_polyfit_on_the_valid_months():
    got = d.slope(M, 6)
    time = np.arange(5, -1, -1.0)  # newest month is the latest time
    for row, value in zip(ROWS, got):
        ok = ~np.isnan(row)
        if ok.sum() < 2:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(np.polyfit(time[ok], row[ok], 1)[0], rel=1e-12)
    assert got[0] == pytest.approx(-1.0)  # 6,5,4,3,2,1 oldest->newest falls by 1 a month


def test_growth_is_relative_to_the_absolute_older_value_and_nan_on_zero():
    # lag01 vs lag02: (1-2)/2, (6-nan), nan, (0-(-2))/2, nan
    np.testing.assert_allclose(d.growth(M, 1), [-0.5, NAN, NAN, 1.0, NAN], equal_nan=True)
    zero = np.array([[5.0], [0.0]])
    assert np.isnan(d.growth(zero, 1)[0])


def test_quality_counts_missing_negative_and_zero_months():
    q = d.quality(np.isnan(M), M)
    np.testing.assert_array_equal(q["n_missing"], [0, 2, 6, 0, 5])
    np.testing.assert_array_equal(q["n_negative"], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(q["n_zero"], [0, 0, 0, 1, 0])


def test_seasonality_uses_calendar_months_of_each_lag():
    # record month August: lag01..03 = Aug, Jul, Jun (summer) = 10; lag07..09 = Feb, Jan, Dec (winter) = 5
    row = np.array([10, 10, 10, 7, 7, 7, 5, 5, 5, 7, 7, 30.0])  # lag12 = Sep of last year, the peak
    s = d.seasonality(row[:, None], np.array([8.0]), (6, 7, 8), (12, 1, 2))
    assert s["summer_winter"][0] == pytest.approx(2.0)
    assert s["peak_month"][0] == 9 and s["trough_month"][0] == 2  # Feb is the first (most recent) 5
    mean = row.mean()
    assert s["amplitude"][0] == pytest.approx((30 - 5) / mean)
    assert s["cv"][0] == pytest.approx(row.std() / mean)


def test_calendar_months_wrap_around_the_year():
    np.testing.assert_array_equal(d.calendar_months(np.array([2]), 4)[:, 0], [2, 1, 12, 11])


def test_signed_log_keeps_the_sign_and_is_finite():
    np.testing.assert_allclose(d.signed_log1p(np.array([-(np.e - 1), 0.0, np.e - 1])), [-1.0, 0.0, 1.0])


def test_to_float_reads_inf_and_null_as_missing_and_bools_as_numbers():
    np.testing.assert_array_equal(d.to_float(pd.Series([1.5, np.inf, -np.inf, None])), [1.5, NAN, NAN, NAN])
    np.testing.assert_array_equal(d.to_float(pd.Series([True, None, False], dtype=object)), [1.0, NAN, 0.0])


def test_dates_give_tenure_months_and_flag_every_bad_value():
    record = np.array(["2025-01-15"] * 5, dtype="datetime64[D]")
    dates = pd.Series(["2024-01-15", "2025-03-01", "not a date", "1850-06-01", None], dtype=object)
    f = d.date_features(dates, record)
    assert f["months"][0] == pytest.approx(366 / (365.25 / 12))
    assert np.isnan(f["months"][1:]).all()  # after the record date, unparseable, before 1900, null
    np.testing.assert_array_equal(f["invalid"], [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(f["year"], [2024, 2025, NAN, NAN, NAN])  # a date after the record keeps its year
    np.testing.assert_array_equal(f["month"], [1, 3, NAN, NAN, NAN])


def test_derive_maps_raw_months_newest_first_and_ratios_skip_missing_months():
    spec = build_spec(dataset_config())
    frame = raw_frame(5, seed=1)
    frame.loc[0, "kwh_m12"] = np.nan
    frame.loc[1, "bill_m11"] = -np.inf
    out = d.derive(frame, spec)
    np.testing.assert_array_equal(out["kwh_lag01"], frame["kwh_m12"].to_numpy())
    np.testing.assert_array_equal(out["kwh_lag12"], frame["kwh_m01"].to_numpy())
    np.testing.assert_array_equal(out["kwh_diff01"], (frame["kwh_m12"] - frame["kwh_m11"]).to_numpy())
    # row 0 has no kwh for lag01: the 3-month ratio uses lag02..03 of both series only
    num = frame.loc[0, ["bill_m11", "bill_m10"]].sum()
    den = frame.loc[0, ["kwh_m11", "kwh_m10"]].sum()
    assert out["ratio_bill_kwh_sum03"][0] == pytest.approx(num / den)
    assert np.isnan(out["ratio_bill_kwh_lag01"][0])
    assert out["bill_n_missing"][1] == 1  # -inf is missing
    assert out["kwh_n_missing"][0] == 1
    shares = np.column_stack([out[f"kwh_share{k:02d}"] for k in range(1, 13)])
    np.testing.assert_allclose(np.nansum(shares, axis=1), 1.0)
    assert set(out) == set(spec.of_kind("value", "count"))


def test_negative_amounts_keep_their_sign_and_are_flagged():
    spec = build_spec(dataset_config())
    frame = raw_frame(3, seed=2)
    frame["balance"] = [-100.0, 0.0, 50.0]
    out = d.derive(frame, spec)
    np.testing.assert_array_equal(out["num_balance"], [-100.0, 0.0, 50.0])
    np.testing.assert_array_equal(out["num_balance_negative"], [1, 0, 0])
    assert out["num_balance_log"][0] == pytest.approx(-np.log1p(100.0))


def test_record_date_parts():
    spec = build_spec(dataset_config())
    frame = raw_frame(2, seed=0)
    frame["record_date"] = [dt.date(2025, 1, 31), dt.date(2025, 11, 2)]
    out = d.derive(frame, spec)
    np.testing.assert_array_equal(out["rec_month"], [1, 11])
    np.testing.assert_array_equal(out["rec_quarter"], [1, 4])
    np.testing.assert_allclose(out["rec_month_sin"], np.sin(2 * np.pi * np.array([1, 11]) / 12))


def test_a_missing_raw_column_is_a_data_error_naming_it():
    with pytest.raises(DataError, match="'kwh_m03'"):
        d.require_batch_columns(raw_frame(2).drop(columns=["kwh_m03"]), build_spec(dataset_config()).raw_columns)
