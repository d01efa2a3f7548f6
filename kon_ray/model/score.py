"""Batch scoring and its metric counts, pure functions over a batch (a dict of numpy columns); the infer stage runs
them once per work unit (kon_ray.drift.onepass), with the models loaded once per worker process.

A batch holds records of both populations; each record is scored by its population's model (segments assigned
from the model folder's own segment_state.json) and comes out as one prediction row: id, population, estrato,
cluster, the actual label when the data has one, the predicted label and one `prob_<label>` column per class
(NaN for a class the record's population model does not know).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from kon_ray import storage
from kon_ray.errors import DataError
from kon_ray.model import metrics
from kon_ray.segment.state import CLUSTER, ESTRATO, STATE_FILE, SegmentState, assign_segments
from kon_ray.train.data import POPULATION_COLUMN, feature_matrix
from kon_ray.train.model_folder import read_model

PROB_PREFIX = "prob_"
PREDICTED = "predicted"
ACTUAL = "actual"


@dataclass
class ModelBundle:
    """A loaded models/<population>/ folder."""

    population: str
    booster: Any  # xgboost.Booster
    metadata: Dict[str, Any]
    segment_state: SegmentState

    @property
    def features(self) -> List[str]:
        return list(self.metadata["features"])

    @property
    def labels(self) -> List[str]:
        return list(self.metadata["class_labels"])

    @property
    def base_features(self) -> List[str]:
        """The columns the data must carry (the model's features less the ones assign_segments adds)."""
        return [f for f in self.features if f not in (ESTRATO, CLUSTER)]


def load_bundle(folder: str, nthread: Optional[int] = None) -> ModelBundle:
    booster, metadata = read_model(folder)
    if nthread:
        booster.set_param({"nthread": nthread})
    state_path = storage.join(folder, STATE_FILE)
    if not storage.exists(state_path):
        raise DataError(f"{folder}: {STATE_FILE} is missing; the model folder is not self-contained")
    state = SegmentState.from_dict(storage.read_json(state_path))
    return ModelBundle(metadata["population"], booster, metadata, state)


def prob_columns(labels: Sequence[str]) -> List[str]:
    return [f"{PROB_PREFIX}{label}" for label in labels]


def all_labels(bundles: Sequence[ModelBundle]) -> List[str]:
    return sorted({label for b in bundles for label in b.labels})


def input_columns(bundles: Sequence[ModelBundle], id_column: str, target_column: Optional[str]) -> List[str]:
    """Every column scoring reads: ids, population, the target (for metrics), features and segmentation inputs."""
    columns = [id_column, POPULATION_COLUMN] + ([target_column] if target_column else [])
    for bundle in bundles:
        columns += bundle.base_features + bundle.segment_state.input_columns()
    return list(dict.fromkeys(columns))


def score_batch(batch: Mapping[str, np.ndarray], bundles: Sequence[ModelBundle], id_column: str,
                target_column: Optional[str], carry: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Predictions for one batch (a dict of numpy columns); records of a population without a model are dropped.
    `carry`: input columns passed through beside the predictions, in the predictions' row order (which groups the
    rows by population)."""
    labels = all_labels(bundles)
    population = np.asarray(batch[POPULATION_COLUMN])
    parts: List[Dict[str, np.ndarray]] = []
    for bundle in bundles:
        keep = population == bundle.population
        count = int(keep.sum())
        if not count:
            continue
        missing = [f for f in bundle.base_features if f not in batch]
        if missing:
            raise DataError(f"feature {missing[0]!r} of the {bundle.population} model is missing from the data")
        # only the columns this model reads, and no row selection at all when the batch is one population
        wanted = [id_column, *bundle.base_features, *bundle.segment_state.input_columns(), *carry]
        if target_column and target_column in batch:
            wanted.append(target_column)
        every = count == len(population)
        rows = {name: np.asarray(batch[name]) if every else np.asarray(batch[name])[keep]
                for name in dict.fromkeys(wanted) if name in batch}  # a missing segment input: assign_segments says so
        rows = assign_segments(rows, bundle.segment_state)
        probs = bundle.booster.inplace_predict(feature_matrix(rows, bundle.features), validate_features=False)
        probs = np.asarray(probs, dtype=np.float32).reshape(count, len(bundle.labels))
        part = {
            id_column: np.asarray(rows[id_column]),
            POPULATION_COLUMN: np.full(count, str(bundle.population), dtype=object),
            ESTRATO: rows[ESTRATO],
            CLUSTER: rows[CLUSTER],
            PREDICTED: np.asarray(bundle.labels, dtype=object)[probs.argmax(axis=1)],
        }
        if target_column and target_column in rows:
            part[ACTUAL] = np.asarray(rows[target_column]).astype(str).astype(object)
        part.update({name: rows[name] for name in carry})
        for label in labels:
            j = bundle.labels.index(label) if label in bundle.labels else None
            part[f"{PROB_PREFIX}{label}"] = probs[:, j] if j is not None else np.full(len(probs), np.nan, np.float32)
        parts.append(part)
    if not parts:
        empty = _empty(id_column, labels, target_column is not None and target_column in batch)
        return empty | {name: np.asarray(batch[name])[:0] for name in carry}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _empty(id_column: str, labels: Sequence[str], with_actual: bool) -> Dict[str, np.ndarray]:
    out = {id_column: np.empty(0, np.int64), POPULATION_COLUMN: np.empty(0, object), ESTRATO: np.empty(0, np.int8),
           CLUSTER: np.empty(0, np.int16), PREDICTED: np.empty(0, object)}
    if with_actual:
        out[ACTUAL] = np.empty(0, object)
    for label in labels:
        out[f"{PROB_PREFIX}{label}"] = np.empty(0, np.float32)
    return out


def label_index(values: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Each value's index in `labels` (as strings), -1 where it is not one of them; vectorised."""
    import pandas as pd

    return pd.Index([str(label) for label in labels]).get_indexer(pd.Series(values, dtype=object).astype(str))


def metric_partials(batch: Mapping[str, np.ndarray], labels_by_population: Mapping[str, Sequence[str]],
                    group_columns: Sequence[str] = (ESTRATO, CLUSTER)) -> Dict[str, Dict[str, Any]]:
    """{population: metric counts} of one batch of predictions (kon_ray.model.metrics.partial, plus the rows whose
    actual label the model does not know); populations without rows in the batch are left out."""

    out: Dict[str, Any] = {}
    population = np.asarray(batch[POPULATION_COLUMN]).astype(str)
    for pop, labels in labels_by_population.items():
        keep = population == pop
        if not keep.any():
            continue
        y_true = label_index(np.asarray(batch[ACTUAL])[keep], labels)
        known = y_true >= 0
        probs = np.column_stack([np.asarray(batch[c])[keep] for c in prob_columns(labels)])[known]
        groups = {g: np.asarray(batch[g])[keep][known] for g in group_columns}
        part = metrics.partial(y_true[known], probs, groups, len(labels))
        part["unknown_label_rows"] = int((~known).sum())
        out[pop] = part
    return out


def merge_metric_partials(partials: Sequence[Mapping[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """{population: merged counts} from per-batch `metric_partials` (exact: integer counts, one float sum)."""

    by_pop: Dict[str, List[Dict[str, Any]]] = {}
    for partial in partials:
        for pop, part in partial.items():
            by_pop.setdefault(pop, []).append(part)
    merged: Dict[str, Dict[str, Any]] = {}
    for pop, parts in by_pop.items():
        merged[pop] = metrics.merge(parts) or {}
        merged[pop]["unknown_label_rows"] = sum(p.get("unknown_label_rows", 0) for p in parts)
    return merged


def model_input(frame, bundle: ModelBundle):
    """The model's input for a pandas frame of the preprocess stage's columns (segments assigned, features in
    the model's order): what `bundle.booster` (or an MLflow-logged copy of it) predicts from."""
    import pandas as pd

    rows = assign_segments(frame, bundle.segment_state)
    return pd.DataFrame(feature_matrix(rows, bundle.features), columns=bundle.features)


__all__ = ["ModelBundle", "load_bundle", "score_batch", "model_input", "metric_partials", "merge_metric_partials",
           "input_columns", "prob_columns", "label_index"]
