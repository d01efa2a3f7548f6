"""Fixtures for the generator's tests: the real dataset configs, and 20k-row samples generated once in memory."""

from __future__ import annotations

import uuid
from typing import Callable, Dict, Tuple

import pandas as pd
import pyarrow as pa
import pytest
from hydra import compose, initialize_config_dir

from kon_ray.config import CONF_DIR, DatasetConfig
from kon_ray.synth import command
from kon_ray.synth.command import SynthCommandConfig
from kon_ray.synth.config import SynthConfig
from kon_ray.synth.model import Calendar
from kon_ray.synth.writer import iter_tables
from tests.conftest import moto_environment

SAMPLE_ROWS = 20_000


def composed(name: str, *overrides: str) -> SynthCommandConfig:
    """The generator's root config (conf/synth.yaml) composed with +dataset=NAME as `python -m kon_ray.synth`
    composes it, validated."""
    command.register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name=command.CONFIG_NAME, overrides=[f"+dataset={name}", *overrides])
    return command.load(cfg)


@pytest.fixture(scope="session")
def dataset_cfg() -> Callable[[str], DatasetConfig]:
    cache: Dict[str, DatasetConfig] = {}

    def get(name: str) -> DatasetConfig:
        if name not in cache:
            cache[name] = composed(name).dataset
        return cache[name]

    return get


@pytest.fixture(scope="session")
def sample(dataset_cfg) -> Callable[..., pd.DataFrame]:
    """sample(name, drift=1.0, seed=7) -> a 20k-row DataFrame with an `in_window` column (the drift window)."""
    cache: Dict[Tuple[str, float, int], pd.DataFrame] = {}

    def get(name: str, drift: float = 1.0, seed: int = 7) -> pd.DataFrame:
        key = (name, drift, seed)
        if key not in cache:
            synth = SynthConfig(rows=SAMPLE_ROWS, rows_per_file=SAMPLE_ROWS, drift=drift, seed=seed)
            table = pa.concat_tables(t for _, t in iter_tables(dataset_cfg(name), synth))
            frame = table.to_pandas()
            start = Calendar.ending(synth.end_month, synth.months).drift_start_day
            days = table.column("record_date").cast(pa.int32()).to_numpy()
            frame["in_window"] = days >= start
            cache[key] = frame
        return cache[key]

    return get


@pytest.fixture
def s3_bucket(monkeypatch, moto_server) -> str:
    """A new, empty bucket on the session's moto S3 server, reached the standard way (AWS_* environment)."""
    import boto3

    for key, value in moto_environment(moto_server).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    bucket = f"kon-synth-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return bucket
