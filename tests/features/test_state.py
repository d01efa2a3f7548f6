"""Fit state: shard invariance, vocabularies and unknown codes, quantiles against numpy, the transform output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kon_ray.errors import ConfigError, DataError
from kon_ray.features import split as s
from kon_ray.features import state as st
from kon_ray.features.derive import parse_dates
from kon_ray.features.spec import build_spec
from kon_ray.features.transform import transform_batch
from tests.features.data import as_config, dataset_config, dataset_plain, raw_frame


def _fit(frame: pd.DataFrame, spec, parts: int = 1, sample_rows: int = 10**6):
    plan = s.make_plan(
        frame["customer_id"].to_numpy(), s.month_index(parse_dates(frame["record_date"])), frame["segment"],
        seed=1, current_months=2, reference_months=None, test_fraction=0.2, train_per_class=None, test_per_class=None,
    )
    portion = s.assign(frame["customer_id"], s.month_index(parse_dates(frame["record_date"])), frame["segment"], plan,
                       sample=False)
    threshold = st.sample_threshold(int((portion == s.TRAIN).sum()), sample_rows)
    chunks = [frame.iloc[idx] for idx in np.array_split(np.arange(len(frame)), parts)]
    partials = [st.partial(chunk, spec, plan, threshold) for chunk in chunks]
    return st.finalize(st.merge(partials, spec), spec, threshold), frame[portion == s.TRAIN]


@pytest.mark.parametrize("sample_rows", [10**6, 300])
def test_merged_shards_give_the_same_state_as_one_pass(sample_rows):
    spec = build_spec(dataset_config())
    frame = raw_frame(1500, seed=11)
    one, _ = _fit(frame, spec, 1, sample_rows)
    shuffled = frame.sample(frac=1.0, random_state=3)
    many, _ = _fit(shuffled, spec, 6, sample_rows)
    assert many == one
    assert (one["fit"]["sample_rows"] == one["fit"]["train_rows"]) == (sample_rows == 10**6)


def test_quantiles_and_medians_are_exact_numpy_values_on_small_train():
    spec = build_spec(dataset_config())
    state, train = _fit(raw_frame(800, seed=12), spec)
    balance = train["balance"].to_numpy()
    assert state["numeric"]["num_balance"]["median"] == pytest.approx(np.median(balance), rel=1e-6)
    assert state["numeric"]["num_balance"]["low"] == pytest.approx(np.quantile(balance, 0.01), rel=1e-6)
    assert state["numeric"]["num_balance"]["high"] == pytest.approx(np.quantile(balance, 0.99), rel=1e-6)
    kwh = train["kwh_m12"].to_numpy()
    assert state["numeric"]["kwh_lag01"]["median"] == pytest.approx(np.nanmedian(kwh), rel=1e-6)


def test_vocabulary_by_count_with_missing_as_a_value_and_counts_exact():
    spec = build_spec(dataset_config())
    state, train = _fit(raw_frame(800, seed=13), spec)
    counts = train["region"].fillna("__missing__").value_counts()
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert state["categorical"]["region"]["vocabulary"] == [k for k, _ in expected]
    assert state["categorical"]["region"]["counts"] == [int(v) for _, v in expected]


def test_unseen_and_capped_categories_get_the_unknown_code_zero():
    plain = dataset_plain(max_categories=2)
    spec = build_spec(as_config(plain))
    state, train = _fit(raw_frame(800, seed=14), spec)
    vocabulary = state["categorical"]["region"]["vocabulary"]
    assert len(vocabulary) == 2
    new = raw_frame(4, seed=15)
    new["region"] = [vocabulary[0], vocabulary[1], "NEVER_SEEN", None if "__missing__" not in vocabulary else "ZZZ"]
    out = transform_batch(new, state, as_config(plain))
    np.testing.assert_array_equal(out["cat_region"].to_numpy(), [1, 2, 0, 0])
    total = state["categorical"]["region"]["counts"][0] + state["categorical"]["region"]["counts"][1]
    total += state["categorical"]["region"]["other_rows"]
    assert out["cat_region_freq"].iloc[0] == pytest.approx(state["categorical"]["region"]["counts"][0] / total)
    assert out["cat_region_freq"].iloc[2] == 0.0


def test_transform_clips_imputes_and_types_every_feature():
    plain = dataset_plain()
    spec = build_spec(as_config(plain))
    state, _ = _fit(raw_frame(800, seed=16), spec)
    new = raw_frame(5, seed=17)
    new["balance"] = [1e12, -1e12, np.nan, np.inf, 0.0]
    out = transform_batch(new, state, as_config(plain))
    stats = state["numeric"]["num_balance"]
    np.testing.assert_allclose(
        out["num_balance"].to_numpy(),
        np.array([stats["high"], stats["low"], stats["median"], stats["median"], 0.0], dtype=np.float32),
    )
    np.testing.assert_array_equal(out["num_balance_missing"], [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(out["num_balance_negative"], [0, 1, 0, 0, 0])
    features = st.feature_columns(state)
    assert list(out.columns) == [
        "customer_id", "record_date", "segment", "avaluo", "kwh_m12", "balance", "population", *features
    ]
    kinds = {f["name"]: f["kind"] for f in state["features"]}
    for name in features:
        assert out[name].dtype == (np.int32 if kinds[name] == "code" else np.float32), name
        assert not out[name].isna().any(), name
    np.testing.assert_array_equal(
        out["population"], np.where(new["tariff_type"] == "residencial", "domestic", "industrial")
    )


def test_bad_values_never_raise():
    plain = dataset_plain()
    spec = build_spec(as_config(plain))
    state, _ = _fit(raw_frame(400, seed=18), spec)
    new = raw_frame(5, seed=19)
    new[[f"kwh_m{k:02d}" for k in range(1, 13)]] = np.nan  # a record with no readings at all
    new["contract_start"] = pd.Series(["garbage", None, "2090-01-01", "1700-01-01", "2020-01-01"], dtype=object)
    new.loc[0, "bill_m12"] = np.inf
    new.loc[1, "tariff_type"] = None
    out = transform_batch(new, state, as_config(plain))
    assert pd.isna(out["population"].iloc[1])
    np.testing.assert_array_equal(out["date_contract_start_invalid"], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(out["kwh_n_missing"], [12] * 5)
    assert out["kwh_mean03"].iloc[0] == np.float32(state["numeric"]["kwh_mean03"]["median"])


def test_state_from_another_feature_config_is_refused():
    state, _ = _fit(raw_frame(300, seed=20), build_spec(dataset_config()))
    with pytest.raises(ConfigError, match="another feature config"):
        transform_batch(raw_frame(3), state, dataset_config(series_families=["lags"]))


def test_state_round_trips_through_json(tmp_path):
    state, _ = _fit(raw_frame(300, seed=21), build_spec(dataset_config()))
    st.save_feature_state(str(tmp_path / "feature_state.json"), state)
    assert st.load_feature_state(str(tmp_path)) == state
    with pytest.raises(ConfigError, match="no feature state"):
        st.load_feature_state(str(tmp_path / "nope"))


def _merged(frame: pd.DataFrame, spec, parts: int = 3):
    plan = s.make_plan(
        frame["customer_id"].to_numpy(), s.month_index(parse_dates(frame["record_date"])), frame["segment"],
        seed=1, current_months=2, reference_months=None, test_fraction=0.2, train_per_class=None, test_per_class=None,
    )
    chunks = [frame.iloc[idx] for idx in np.array_split(np.arange(len(frame)), parts)]
    return st.merge([st.partial(chunk, spec, plan, 2**64 - 1) for chunk in chunks], spec)


def test_infinite_raw_values_are_counted_over_every_split_and_named_with_the_smallest_id():
    spec = build_spec(dataset_config())
    frame = raw_frame(600, seed=14)
    rows = [5, 250, 599]  # spread over the shards, whatever split each row falls in
    frame.loc[frame.index[rows], "balance"] = [np.inf, -np.inf, np.inf]
    merged = _merged(frame, spec)
    smallest = int(frame["customer_id"].iloc[rows].min())
    assert merged["infinite"] == {"balance": [3, smallest]}
    with pytest.raises(DataError, match=rf"column 'balance' has 3 infinite values \(e.g. customer_id {smallest}\)"):
        st.check_raw_values(merged, spec)


def test_nan_is_a_missing_value_but_a_column_null_in_every_train_row_is_an_error():
    spec = build_spec(dataset_config())
    frame = raw_frame(600, seed=15)
    frame.loc[frame.index[:100], "balance"] = np.nan
    st.check_raw_values(_merged(frame, spec), spec)  # some nulls: fine, the missing flags carry them
    frame["balance"] = np.nan
    merged = _merged(frame, spec)
    assert merged["present"]["balance"] == 0 and merged["present"]["kwh_m12"] > 0
    with pytest.raises(DataError, match=rf"column 'balance' is null in all {merged['rows']:,} train rows"):
        st.check_raw_values(merged, spec)
