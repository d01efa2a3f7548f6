"""The generated feature list: its size per family and the config errors that name the key."""

from __future__ import annotations

import pytest

from kon_ray.config import load_config
from kon_ray.errors import ConfigError
from kon_ray.features.config import FeatureConfig
from kon_ray.features.spec import build_spec
from tests.conftest import compose_config
from tests.features.data import as_config, dataset_config, dataset_plain


def test_feature_count_per_family_by_hand():
    spec = build_spec(dataset_config())
    # lags, logs, diffs, windows, slopes, growth, season, quality, shares
    per_series = 12 + 12 + 11 + 3 * 4 + 3 + 4 + 5 + 3 + 13
    ratio = 12 + 3
    numeric = 2 * 4 + 1 * 2  # balance, avaluo; autopay is a bool flag
    expected = 2 * per_series + ratio + numeric + 2 * 2 + 4 + 4  # + categoricals, 1 date, record-date parts
    assert len(spec.features) == expected
    assert len(set(spec.names)) == len(spec.names)
    assert spec.flags == ("autopay",) and spec.numeric == ("balance", "avaluo")


def test_families_can_be_dropped():
    spec = build_spec(dataset_config(series_families=["lags", "windows"], ratios=[]))
    assert len([n for n in spec.names if n.startswith("kwh_")]) == 12 + 12


@pytest.mark.parametrize(
    "features, match",
    [
        ({"numeric": ["nope"]}, "features.numeric names column 'nope'"),
        ({"numeric": ["region"]}, "declared string"),
        ({"monthly_series": ["gas_m"]}, "'gas_m01'"),
        ({"dates": ["avaluo"]}, "declared float64"),
    ],
)
def test_undeclared_or_mistyped_columns_are_config_errors(features, match):
    plain = dataset_plain(**features)
    if "monthly_series" in features:
        plain["features"]["ratios"] = []
    with pytest.raises(ConfigError, match=match):
        build_spec(as_config(plain))


def test_segment_inputs_must_be_declared():
    plain = dataset_plain()
    plain["segment"]["cluster_features"] = ["ghost"]
    with pytest.raises(ConfigError, match="segment.cluster_features names column 'ghost'"):
        build_spec(as_config(plain))


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"series_families": ["lags", "bogus"]}, "series_families"),
        ({"windows": [13]}, "windows"),
        ({"clip_quantiles": [0.9, 0.1]}, "clip_quantiles"),
        ({"monthly_series": ["a_m"], "ratios": [["a_m", "b_m"]]}, "ratios"),
        ({"max_categories": 0}, "max_categories"),
    ],
)
def test_feature_config_validation_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"features.{key}"):
        FeatureConfig(**kwargs)


def test_split_knobs_compose_from_the_command_line(tmp_path):
    config = load_config(
        compose_config(["+dataset=POLA", "split.train_per_class=500", "split.test_per_class=200"], tmp_path)
    )
    assert (config.split.train_per_class, config.split.test_per_class) == (500, 200)
    with pytest.raises(ConfigError, match="split.current_months"):
        load_config(compose_config(["+dataset=POLA", "split.current_months=0"], tmp_path))
