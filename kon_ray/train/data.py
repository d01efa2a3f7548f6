"""What a training worker is fed, as pure functions over a batch: the model's feature order, label encoding, the
deterministic validation split, and the per-population checks that run on the driver before any Ray Train work."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import pandas as pd

from kon_ray.errors import DataError
from kon_ray.hashing import id_unit_interval
from kon_ray.segment.state import SEGMENT_COLUMNS, SegmentState, assign_segments

POPULATION_COLUMN = "population"  # written by the preprocess stage: "domestic" / "industrial"
VALIDATION_SALT = 1  # added to the run seed so the validation ids are not the k-means sample ids


def model_features(base_features: Sequence[str]) -> List[str]:
    """The model's input columns in order: the preprocess stage's features, then estrato and cluster."""
    return [f for f in base_features if f not in SEGMENT_COLUMNS] + list(SEGMENT_COLUMNS)


def validation_mask(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the records held out for early stopping: a fixed share of ids, whatever the sharding."""
    return id_unit_interval(ids, salt=seed + VALIDATION_SALT) < fraction


def feature_matrix(batch: Mapping[str, Any], features: Sequence[str]) -> np.ndarray:
    """(rows x features) float32, C-ordered, from a batch's columns (NaN stays NaN: XGBoost's missing value)."""
    n = len(batch[features[0]])
    X = np.empty((n, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        X[:, j] = batch[name]
    return X


def encode_labels(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class index per label (float32, as XGBoost takes labels); -1 for a label not in `classes`."""
    index = pd.Index(list(classes))
    return index.get_indexer(pd.Series(labels).astype(str)).astype(np.float32)


def training_block(
    batch: Dict[str, np.ndarray],
    *,
    population: str,
    features: Sequence[str],
    classes: Sequence[str],
    segment_state: Dict[str, Any],
    id_column: str,
    target_column: str,
    validation_fraction: float,
    seed: int,
) -> Dict[str, np.ndarray]:
    """One batch of the train split -> this population's rows as {"X": float32 matrix, "y", "valid"}.

    The matrix is built here, in parallel Ray Data tasks, so that a training worker receives ready numpy arrays
    and never converts columns itself."""
    keep = np.asarray(batch[POPULATION_COLUMN]) == population
    rows = {name: np.asarray(values)[keep] for name, values in batch.items()}
    rows = assign_segments(rows, SegmentState.from_dict(segment_state))
    return {
        "X": feature_matrix(rows, features),
        "y": encode_labels(rows[target_column], classes),
        "valid": validation_mask(rows[id_column], validation_fraction, seed),
    }


def class_count_block(batch: pd.DataFrame, *, target_column: str, id_column: str, validation_fraction: float,
                      seed: int) -> pd.DataFrame:
    """Records per (population, class, validation?) in one batch; the driver adds the blocks up."""
    frame = pd.DataFrame({
        "population": batch[POPULATION_COLUMN].astype(str).to_numpy(),
        "label": batch[target_column].astype(str).to_numpy(),
        "valid": validation_mask(batch[id_column].to_numpy(), validation_fraction, seed),
    })
    return frame.groupby(["population", "label", "valid"], as_index=False).size()


def merge_class_counts(blocks: pd.DataFrame) -> Dict[str, Dict[str, Dict[str, int]]]:
    """{population: {label: {"train": n, "validation": m}}} from the stacked per-block counts."""
    out: Dict[str, Dict[str, Dict[str, int]]] = {}
    totals = blocks.groupby(["population", "label", "valid"])["size"].sum()
    for (population, label, valid), size in totals.items():
        entry = out.setdefault(population, {}).setdefault(label, {"train": 0, "validation": 0})
        entry["validation" if valid else "train"] += int(size)
    return out


def check_population(population: str, counts: Mapping[str, Mapping[str, int]], min_rows_per_class: int) -> List[str]:
    """The population's classes (sorted: index = class id), or a DataError naming the population and its counts
    when it cannot train a multiclass model: no records, one class, a class rarer than `min_rows_per_class`, or no
    validation records for early stopping."""
    totals = {label: c["train"] + c["validation"] for label, c in sorted(counts.items())}
    shown = ", ".join(f"{label}={n}" for label, n in totals.items()) or "no records"
    if not totals:
        raise DataError(f"population {population!r}: no records in features/train; a model needs at least 2 classes")
    if len(totals) < 2:
        raise DataError(
            f"population {population!r}: a single class in features/train ({shown}); a model needs at least 2"
        )
    rare = [label for label, n in totals.items() if n < min_rows_per_class]
    if rare:
        raise DataError(
            f"population {population!r}: class {rare[0]!r} has fewer than model.min_rows_per_class="
            f"{min_rows_per_class} records in features/train ({shown})"
        )
    if sum(c["validation"] for c in counts.values()) == 0:
        raise DataError(
            f"population {population!r}: too few records ({sum(totals.values())}) to hold out a validation split "
            "for early stopping (model.validation_fraction)"
        )
    return list(totals)
