"""Prediction drift's pure pieces: combining the populations' blocks, the flag rule, the 'no model' path and the
`drift.prediction_model` key. The scoring itself is infer's (tests/infer/test_prediction_drift_once.py)."""

from __future__ import annotations

import pytest

from kon_ray.config import load_config
from kon_ray.drift.prediction import combine, is_high, not_available
from kon_ray.errors import ConfigError
from kon_ray.tracking.config import TrackingConfig
from kon_ray.tracking.registry import resolve
from tests.conftest import compose_config


def _block(severity: str, psi: float) -> dict:
    return {"available": True, "severity": severity, "psi_max": psi,
            "features": [{"name": "prob_a", "psi": psi, "severity": severity}]}


def test_combine_names_each_population_and_takes_the_worst():
    models = [{"population": "domestic", "name": "POLA-domestic", "version": "3"}]
    out = combine({"domestic": _block("MODERATE", 0.2), "industrial": _block("HIGH", 0.4)}, models)
    assert out == {"available": True, "severity": "HIGH", "psi_max": 0.4, "models": models,
                   "features": [{"name": "domestic/prob_a", "psi": 0.2, "severity": "MODERATE"},
                                {"name": "industrial/prob_a", "psi": 0.4, "severity": "HIGH"}]}
    partial = combine({"domestic": _block("NONE", 0.01), "industrial": not_available("no rows")},
                      unscored={"other": "nothing registered"})
    assert partial["severity"] == "NONE" and partial["not_checked"] == {"other": "nothing registered",
                                                                       "industrial": "no rows"}
    assert combine({}, [], {"domestic": "x", "industrial": "y"}) == {
        "available": False, "severity": None, "reason": "domestic: x; industrial: y", "models": []}


def test_only_available_high_raises_the_flag():
    assert [is_high(b) for b in (_block("HIGH", 0.3), _block("MODERATE", 0.2), not_available("none"),
                                 {"available": False, "severity": "HIGH"})] == [True, False, False, False]


def test_tracking_off_resolves_no_model_and_says_why():
    resolution = resolve("POLA", TrackingConfig(enabled=False))
    assert resolution.models == () and resolution.key_material() is None
    assert [p for p, _ in resolution.missing] == ["domestic", "industrial"]
    assert "tracking is off" in resolution.reason()


def test_no_tracking_database_yet_is_no_model(tmp_path):
    resolution = resolve("POLA", TrackingConfig(uri=f"sqlite:///{tmp_path}/none.db"))
    assert resolution.key_material() is None and "no tracking database" in resolution.reason()
    assert not (tmp_path / "none.db").exists()  # looking did not create a store


@pytest.mark.parametrize("value, expected", [("3", "3"), ("'@champion'", "@champion"), ("null", None)])
def test_prediction_model_accepts_a_version_an_alias_or_null(tmp_path, value, expected):
    config = load_config(compose_config(["+dataset=POLA", f"drift.prediction_model={value}"], tmp_path))
    assert config.drift.prediction_model == expected


@pytest.mark.parametrize("value", ["latest", "0", "models:/x/1", "'@'"])
def test_a_bad_prediction_model_is_a_one_line_config_error(tmp_path, value):
    with pytest.raises(ConfigError, match=r"^drift.prediction_model must be null \(the latest registered version\),"
                                          r" a version number \(3\) or an alias \(@champion\), got '.*'$"):
        load_config(compose_config(["+dataset=POLA", f"drift.prediction_model={value}"], tmp_path))
