"""The dataset YAML is the one source of the raw schema: the generator writes exactly what it declares, ingest
accepts it, and a YAML the generator cannot follow stops with one line naming the column or value."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from kon_ray.errors import ConfigError
from kon_ray.features.spec import build_spec
from kon_ray.ingest import schema_problems
from kon_ray.synth.config import SynthConfig
from kon_ray.synth.model import bind
from kon_ray.synth.schema import SPECS
from kon_ray.synth.writer import generate

DATASETS = tuple(SPECS)  # CLIE, POLA, HFAC

ARROW_NAMES = {"int64": "int64", "float64": "double", "string": "string", "bool": "bool", "date": "date32[day]"}


@pytest.mark.parametrize("name", DATASETS)
def test_every_declared_column_has_a_rule_and_every_rule_is_declared(name, dataset_cfg):
    cfg = dataset_cfg(name)
    data = bind(cfg)
    assert data.columns == tuple(cfg.columns.items())  # the YAML's names, order and types, nothing added
    assert data.estrato_thresholds == tuple(float(t) for t in cfg.segment.estrato_thresholds)
    assert 40 <= len(cfg.columns) <= 80


@pytest.mark.parametrize("name", DATASETS)
def test_the_pipeline_reads_the_same_yaml(name, dataset_cfg):
    """The roles in `features:` cover the declared columns: the preprocess stage's spec builds from them."""
    cfg = dataset_cfg(name)
    spec = build_spec(cfg)
    roles = [*spec.numeric, *spec.flags, *spec.categorical, *spec.dates, cfg.id_column, cfg.date_column,
             cfg.target_column, *(f"{prefix}{k:02d}" for prefix in cfg.features.monthly_series for k in range(1, 13))]
    assert sorted(roles) == sorted(cfg.columns)  # every raw column plays exactly one role, the one its YAML gives


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
        assert [(f.name, str(f.type)) for f in schema] == [(c, ARROW_NAMES[t]) for c, t in cfg.columns.items()]
        assert schema_problems(part, schema, dict(cfg.columns)) == []  # what the ingest stage checks


def _without(columns: dict, *names: str) -> dict:
    return {c: t for c, t in columns.items() if c not in names}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: {**c, "kwh_m01": "int64"},
         "dataset.columns.kwh_m01: declared int64, but kon_ray.synth draws float64 values for it"
         " (conf/dataset/POLA.yaml)"),
        (lambda c: {**c, "record_date": "string"},
         "dataset.columns.record_date: declared string, but kon_ray.synth draws date values for it"),
        (lambda c: {**c, "region": "int64"},
         "dataset.columns.region: declared int64, but kon_ray.synth draws string values for it"),
        (lambda c: {**c, "smart_meter": "bool"},
         "dataset.columns.smart_meter: kon_ray.synth has no rule for column 'smart_meter' of POLA"
         " (conf/dataset/POLA.yaml); remove it there or add its rule to kon_ray/synth/model.py"),
        (lambda c: _without(c, "meter_brand"),
         "dataset.columns: conf/dataset/POLA.yaml does not declare 'meter_brand', which kon_ray.synth draws for"
         " POLA; add `meter_brand: string`"),
        (lambda c: _without(c, "kwh_m12"),  # a series is drawn whole
         "does not declare 'kwh_m12', which kon_ray.synth draws for POLA; add `kwh_m12: float64`"),
        (lambda c: {**c, "inspection_overdue": "bool"},  # drawn only with its inspection date
         "dataset.columns.inspection_overdue: kon_ray.synth has no rule for column 'inspection_overdue' of POLA"),
    ],
)
def test_a_column_the_generator_cannot_follow_is_one_line_naming_it(change, message, dataset_cfg):
    cfg = dataset_cfg("POLA")
    wrong = dataclasses.replace(cfg, columns=change(dict(cfg.columns)))
    with pytest.raises(ConfigError) as raised:
        bind(wrong)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_an_extra_column_of_another_dataset_is_drawn_when_declared(dataset_cfg):
    """The rules are per column, not per dataset: POLA declaring CLIE's complaints_12m gets it drawn."""
    cfg = dataset_cfg("POLA")
    data = bind(dataclasses.replace(cfg, columns={**cfg.columns, "complaints_12m": "int64"}))
    assert data.columns[-1] == ("complaints_12m", "int64")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("industrial_values", ["comercial", "industrial"],
         "dataset.industrial_values lacks 'industrial_mt', an industrial tariff_type kon_ray.synth draws for POLA"),
        ("industrial_values", ["comercial", "industrial", "industrial_mt", "oficial"],
         "dataset.industrial_values: kon_ray.synth draws no tariff_type 'oficial' for POLA"),
        ("target_column", "region", "dataset.target_column: kon_ray.synth draws 'segment' for it, got 'region'"),
    ],
)
def test_population_and_roles_must_be_what_the_generator_draws(field, value, message, dataset_cfg):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        bind(dataclasses.replace(dataset_cfg("POLA"), **{field: value}))


def test_estrato_rules_come_from_the_yaml(dataset_cfg):
    cfg = dataset_cfg("POLA")
    lower = dataclasses.replace(cfg.segment, estrato_thresholds=[1e6, 2e6, 3e6, 4e6, 5e6])
    assert bind(dataclasses.replace(cfg, segment=lower)).estrato_thresholds == (1e6, 2e6, 3e6, 4e6, 5e6)
    with pytest.raises(ConfigError, match=r"dataset\.segment\.estrato_thresholds: kon_ray\.synth needs the 5 cut"):
        bind(dataclasses.replace(cfg, segment=dataclasses.replace(cfg.segment, estrato_thresholds=[])))


def test_the_cut_points_set_the_bill_prices(dataset_cfg):
    """Subsidised prices follow the YAML's cut points: everyone estrato 6 (every cut point at 1 COP) pays more."""
    cfg = dataset_cfg("CLIE")
    rich = dataclasses.replace(cfg, segment=dataclasses.replace(cfg.segment, estrato_thresholds=[1, 2, 3, 4, 5]))
    synth = SynthConfig(rows=1_000, rows_per_file=1_000)
    from kon_ray.synth.writer import iter_tables

    (_, base), = list(iter_tables(cfg, synth))
    (_, shifted), = list(iter_tables(rich, synth))
    domestic = ~base.to_pandas()["tariff_type"].isin(cfg.industrial_values)
    subsidy = base.to_pandas()["subsidy_contribution"][domestic]
    assert (subsidy < 0).mean() > 0.5  # most domestic records are estrato 1-3 with the YAML's cut points
    assert (shifted.to_pandas()["subsidy_contribution"][domestic] > 0).all()  # estrato 6: a contribution
    assert base.column("avaluo_catastral").equals(shifted.column("avaluo_catastral"))  # same draws otherwise


def test_an_unknown_dataset_is_a_config_error(dataset_cfg):
    cfg = dataclasses.replace(dataset_cfg("POLA"), name="NOPE")
    with pytest.raises(ConfigError, match="CLIE, POLA, HFAC"):
        generate(cfg, SynthConfig(rows=10), "/nonexistent/never")
