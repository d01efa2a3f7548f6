"""Applying a fitted state to a batch: derive, winsorize, impute, encode; the output columns and their types.

Output of `transform_batch` (and of every Parquet part the stage writes), in this order:
- passthrough: id, record date, target, then the segment inputs (dataset.segment.estrato_column and
  cluster_features), as they are in the raw data;
- ``population``: "domestic" or "industrial" (population_column in dataset.industrial_values); null stays null;
- the features in `feature_columns(state)` order: float32, except categorical codes (int32, 0 = unknown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping

import numpy as np
import pandas as pd

from kon_ray.errors import ConfigError
from kon_ray.features.derive import derive, require_batch_columns
from kon_ray.features.spec import POPULATION, Spec, build_spec
from kon_ray.features.state import category_strings

if TYPE_CHECKING:
    from kon_ray.config import DatasetConfig


def check_state(state: Mapping[str, Any], spec: Spec) -> None:
    names = [f["name"] for f in state["features"]]
    if names != spec.names:
        extra = sorted(set(names) ^ set(spec.names))
        example = f" (e.g. {extra[0]!r})" if extra else " (same names, other order)"
        raise ConfigError(
            f"feature_state.json was fitted for another feature config than dataset {spec.dataset}'s{example};"
            " rerun the preprocess stage"
        )


def population_of(values: pd.Series, industrial_values) -> np.ndarray:
    """'industrial' / 'domestic' per row; null stays None (counted in the split summary, never guessed)."""
    industrial = values.isin(list(industrial_values)).to_numpy()
    out = np.where(industrial, "industrial", "domestic").astype(object)
    out[values.isna().to_numpy()] = None
    return out


def feature_arrays(batch: pd.DataFrame, state: Mapping[str, Any], spec: Spec) -> Dict[str, np.ndarray]:
    """name -> float32 (int32 for codes) array, in the spec's order."""
    derived = derive(batch, spec)
    out: Dict[str, np.ndarray] = {}
    numeric = state["numeric"]
    categorical = state["categorical"]
    codes: Dict[str, np.ndarray] = {}
    for name, kind in spec.features:
        if kind == "value":
            x = derived[name]
            stats = numeric[name]
            if stats["low"] is not None:
                x = np.clip(x, stats["low"], stats["high"])  # NaN passes through clip unchanged
            if spec.impute:
                x = np.where(np.isnan(x), stats["median"], x)
            out[name] = x.astype(np.float32)
        elif kind == "count":
            out[name] = derived[name].astype(np.float32)
        elif kind == "code":
            column = name[len("cat_") :]
            vocabulary = categorical[column]["vocabulary"]
            # unseen values -> -1 -> +1 = 0, the unknown code
            code = pd.Categorical(category_strings(batch[column]), categories=vocabulary).codes.astype(np.int32) + 1
            codes[column] = code
            out[name] = code
        else:  # freq: the train share of the row's category, 0 for unknown
            column = name[len("cat_") : -len("_freq")]
            entry = categorical[column]
            rows = max(sum(entry["counts"]) + entry["other_rows"], 1)
            lookup = np.concatenate([[0.0], np.asarray(entry["counts"], dtype=np.float64) / rows])
            out[name] = lookup[codes[column]].astype(np.float32)
    return out


def transform_frame(batch: pd.DataFrame, state: Mapping[str, Any], spec: Spec) -> pd.DataFrame:
    require_batch_columns(batch, spec.raw_columns)
    columns: Dict[str, Any] = {c: batch[c].to_numpy() for c in spec.passthrough}
    columns[POPULATION] = population_of(batch[spec.population_column], spec.industrial_values)
    columns.update(feature_arrays(batch, state, spec))
    return pd.DataFrame(columns, index=batch.index)


def transform_batch(
    batch: pd.DataFrame, state: Mapping[str, Any], dataset: "DatasetConfig"
) -> pd.DataFrame:
    """Transform raw records with a saved state (what inference uses on new data).

    Args:
        batch: raw records with the dataset's declared columns.
        state: `load_feature_state(...)` of the run whose model is used.
        dataset: the dataset's config (`config.dataset`) the state was fitted with.
    Returns:
        passthrough columns, `population`, then the features (see the module docstring).
    """
    spec = build_spec(dataset)
    check_state(state, spec)
    return transform_frame(batch, state, spec)

