"""The dataset YAMLs declare exactly what the generator writes, and ingest accepts it."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from kon_ray.errors import ConfigError
from kon_ray.ingest import schema_problems
from kon_ray.synth import generate
from kon_ray.synth.config import SynthConfig
from kon_ray.synth.model import ESTRATO_THRESHOLDS
from kon_ray.synth.schema import SPECS, SERIES_MONTHS
from kon_ray.synth.writer import check_declared

DATASETS = tuple(SPECS)  # CLIE, POLA, HFAC

ARROW_NAMES = {"int64": "int64", "float64": "double", "string": "string", "bool": "bool", "date": "date32[day]"}


@pytest.mark.parametrize("name", DATASETS)
def test_yaml_columns_equal_generator_columns(name, dataset_cfg):
    declared = dataset_cfg(name).columns
    assert list(declared.items()) == list(SPECS[name].declared_columns().items())  # names, order and types
    assert 40 <= len(declared) <= 80


@pytest.mark.parametrize("name", DATASETS)
def test_yaml_features_and_segment_follow_the_generator(name, dataset_cfg):
    cfg, spec = dataset_cfg(name), SPECS[name]
    for role, columns in spec.feature_lists().items():  # the role lists; the family knobs are the features stage's
        assert list(getattr(cfg.features, role)) == columns, role
    for pair in cfg.features.ratios:
        assert set(pair) <= set(cfg.features.monthly_series), pair
    assert cfg.industrial_values == spec.industrial_values
    assert tuple(cfg.segment.estrato_thresholds) == ESTRATO_THRESHOLDS
    assert cfg.segment.estrato_column == "avaluo_catastral"
    assert 3 <= len(cfg.segment.cluster_features) <= 6 and cfg.segment.clusters == 4
    for column in cfg.segment.cluster_features:
        assert cfg.columns[column] in ("int64", "float64"), column
    for prefix in cfg.features.monthly_series:
        assert all(f"{prefix}{k:02d}" in cfg.columns for k in range(1, SERIES_MONTHS + 1))


def test_datasets_differ_in_schema_and_size(dataset_cfg):
    columns = {name: set(dataset_cfg(name).columns) for name in DATASETS}
    assert columns["CLIE"] - columns["POLA"] and columns["POLA"] - columns["CLIE"]
    assert "gas_m3_m01" in columns["HFAC"] and "kwh_m01" not in columns["HFAC"]
    assert {name: dataset_cfg(name).full_rows for name in DATASETS} == {
        "CLIE": 4_000_000,
        "POLA": 3_500_000,
        "HFAC": 2_500_000,
    }


@pytest.mark.parametrize("name", DATASETS)
def test_written_parquet_has_the_declared_schema(name, dataset_cfg, tmp_path):
    cfg = dataset_cfg(name)
    summary = generate(cfg, SynthConfig(rows=1_500, rows_per_file=1_000, workers=1), str(tmp_path / name))
    assert summary["rows"] == 1_500 and summary["files"] == 2
    for part in ("part-00000.parquet", "part-00001.parquet"):
        schema = pq.read_schema(tmp_path / name / part)
        assert {f.name: str(f.type) for f in schema} == {c: ARROW_NAMES[t] for c, t in cfg.columns.items()}
        assert schema_problems(part, schema, dict(cfg.columns)) == []  # what the ingest stage checks


def test_a_yaml_that_disagrees_is_a_config_error(dataset_cfg):
    cfg = dataset_cfg("POLA")
    wrong = dataclasses.replace(cfg, columns={**cfg.columns, "kwh_m01": "int64"})
    with pytest.raises(ConfigError, match="kwh_m01"):
        check_declared(wrong, SPECS["POLA"])


def test_an_unknown_dataset_is_a_config_error(dataset_cfg):
    cfg = dataclasses.replace(dataset_cfg("POLA"), name="NOPE")
    with pytest.raises(ConfigError, match="CLIE, POLA, HFAC"):
        generate(cfg, SynthConfig(rows=10), "/nonexistent/never")
