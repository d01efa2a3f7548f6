"""Tiny raw data and a matching dataset config for the features tests (no dependency on the generator)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict

import numpy as np
import pandas as pd

from kon_ray.config import DatasetConfig
from kon_ray.features.config import FeatureConfig
from kon_ray.segment.config import SegmentConfig

MONTHS = 12


def dataset_plain(**features: Any) -> Dict[str, Any]:
    """A plain `dataset` config block: two 12-month series, 2 numerics, a flag, 2 categoricals, a date."""
    columns = {
        "customer_id": "int64",
        "record_date": "date",
        "segment": "string",
        "tariff_type": "string",
        "region": "string",
        "avaluo": "float64",
        "balance": "float64",
        "autopay": "bool",
        "contract_start": "date",
        **{f"kwh_m{k:02d}": "float64" for k in range(1, MONTHS + 1)},
        **{f"bill_m{k:02d}": "float64" for k in range(1, MONTHS + 1)},
    }
    feats = {
        "monthly_series": ["kwh_m", "bill_m"],
        "numeric": ["balance", "avaluo", "autopay"],
        "categorical": ["region", "tariff_type"],
        "dates": ["contract_start"],
        "ratios": [["bill_m", "kwh_m"]],
    }
    feats.update(features)
    return {
        "name": "TINY",
        "path": "unused",
        "id_column": "customer_id",
        "date_column": "record_date",
        "target_column": "segment",
        "population_column": "tariff_type",
        "industrial_values": ["industrial", "comercial"],
        "columns": columns,
        "features": feats,
        "segment": {"estrato_column": "avaluo", "cluster_features": ["kwh_m12", "balance"]},
    }


def raw_frame(n: int, seed: int = 0, start_id: int = 1, months_span: int = 12, last: str = "2025-12") -> pd.DataFrame:
    """n random raw records over `months_span` months ending at `last`, 4 classes, a few missing values."""
    rng = np.random.default_rng(seed)
    end = pd.Period(last, "M")
    periods = [end - k for k in range(months_span)]
    record = [periods[i].start_time.date() + dt.timedelta(days=int(d))
              for i, d in zip(rng.integers(0, months_span, n), rng.integers(0, 28, n))]
    frame = {
        "customer_id": np.arange(start_id, start_id + n, dtype=np.int64),
        "record_date": record,
        "segment": rng.choice(["alto", "bajo", "moroso", "regular"], n, p=[0.1, 0.2, 0.3, 0.4]),
        "tariff_type": rng.choice(["residencial", "comercial", "industrial"], n),
        "region": rng.choice(["ANT", "BOG", "VAL", None], n),
        "avaluo": rng.gamma(2.0, 5e7, n),
        "balance": rng.normal(0, 1000, n),
        "autopay": rng.choice([True, False], n),
        "contract_start": [r - dt.timedelta(days=int(d)) for r, d in zip(record, rng.integers(-30, 4000, n))],
    }
    for k in range(1, MONTHS + 1):
        kwh = rng.gamma(2.0, 100.0, n)
        kwh[rng.random(n) < 0.02] = np.nan
        frame[f"kwh_m{k:02d}"] = kwh
        frame[f"bill_m{k:02d}"] = kwh * 900 + rng.normal(0, 1000, n)
    return pd.DataFrame(frame)




def as_config(plain: Dict[str, Any]) -> DatasetConfig:
    """A plain `dataset` block (as `dataset_plain` builds and a test edits it) as the frozen DatasetConfig the
    pipeline reads."""
    fields = dict(plain)
    fields["features"] = FeatureConfig(**plain.get("features", {}))
    fields["segment"] = SegmentConfig(**plain.get("segment", {}))
    return DatasetConfig(**fields)


def dataset_config(**features: Any) -> DatasetConfig:
    """`dataset_plain(**features)` as a DatasetConfig."""
    return as_config(dataset_plain(**features))
