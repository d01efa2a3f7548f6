"""`python -m kon_ray.synth +dataset=POLA debug=tiny` writes data the pipeline's own checks accept."""

from __future__ import annotations

import pyarrow.parquet as pq

from kon_ray.features.spec import build_spec
from kon_ray.ingest import schema_hash, validate
from kon_ray.synth.writer import generate
from tests.synth.conftest import composed


def test_tiny_data_passes_the_pipelines_schema_check(tmp_path):
    config = composed("POLA", "debug=tiny")
    path = str(tmp_path / "POLA")
    summary = generate(config.dataset, config.synth, path)
    assert (summary["rows"], summary["files"]) == (3_000, 1)
    checked = validate(path, dict(config.dataset.columns), config.dataset.id_column)  # the ingest stage's check
    assert checked["rows"] == 3_000 and checked["schema_hash"] == schema_hash(dict(config.dataset.columns))
    spec = build_spec(config.dataset)  # what preprocess derives its features from
    table = pq.read_table(checked["files"][0])
    assert {*spec.numeric, *spec.flags, *spec.categorical, *spec.dates} <= set(table.column_names)
    industrial = table.column("tariff_type").to_pandas().isin(config.dataset.industrial_values)
    assert 300 < industrial.sum() < 900  # both populations present for the two models
