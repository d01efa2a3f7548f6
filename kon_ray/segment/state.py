"""The fitted segmentation (`segment/segment_state.json`) and `assign_segments`, the per-batch transform that the
train and infer stages apply: it adds `estrato` and `cluster` to a batch without rewriting the feature data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, MutableMapping, TypeVar

import numpy as np
import pandas as pd

from kon_ray.errors import DataError
from kon_ray.features.derive import signed_log1p
from kon_ray.segment.estrato import assign_estrato
from kon_ray.segment.kmeans import nearest, standardize

ESTRATO = "estrato"
CLUSTER = "cluster"
SEGMENT_COLUMNS = (ESTRATO, CLUSTER)
STATE_FILE = "segment_state.json"

Batch = TypeVar("Batch", pd.DataFrame, Dict[str, np.ndarray])


@dataclass(frozen=True)
class SegmentState:
    estrato_column: str  # "" = not configured: every record gets estrato 0
    estrato_thresholds: List[float]
    cluster_features: List[str]  # [] = not configured: every record is cluster 0
    mean: List[float]  # standardization fitted on train, one per cluster feature
    std: List[float]
    centroids: List[List[float]]  # k x d, in standardized units
    # within-cluster sum of squares of each Lloyd step's assignment (to the centres before that step moved them)
    inertia: List[float] = field(default_factory=list)
    iterations: int = 0  # Lloyd steps run
    converged: bool = False  # stopped by the tolerance (False: by the cap, max_iterations)
    max_iterations: int = 0  # segment.kmeans_iterations, the cap
    tolerance: float = 0.0  # segment.kmeans_tolerance (kon_ray/segment/kmeans.py: the convergence rule)
    train_rows: int = 0
    cluster_sizes: List[int] = field(default_factory=list)  # train records per cluster in the last Lloyd step
    log_scale: bool = False  # cluster features go through signed_log1p before standardizing

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SegmentState":
        try:
            return cls(**data)
        except TypeError as exc:
            raise DataError(f"{STATE_FILE}: not a segment state ({exc})") from None

    def input_columns(self) -> List[str]:
        """The raw columns a batch must carry for `assign_segments`."""
        return list(dict.fromkeys(([self.estrato_column] if self.estrato_column else []) + list(self.cluster_features)))


def _numeric(batch: Any, column: str) -> np.ndarray:
    if column not in batch:
        raise DataError(f"segmentation input column {column!r} is missing from the data")
    values = batch[column]
    try:
        return np.asarray(pd.to_numeric(pd.Series(values), errors="raise"), dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"segmentation input column {column!r} is not numeric") from None


def cluster_matrix(batch: Any, columns: List[str], log_scale: bool = False) -> np.ndarray:
    """The cluster features of a batch as a float64 (rows x d) array, NaN for missing, log-scaled if asked."""
    X = np.column_stack([_numeric(batch, c) for c in columns]) if columns else np.empty((_rows(batch), 0))
    return signed_log1p(X) if log_scale else X


def _rows(batch: Any) -> int:
    if isinstance(batch, pd.DataFrame):
        return len(batch)
    return len(next(iter(batch.values()))) if batch else 0


def assign_segments(batch: Batch, state: SegmentState) -> Batch:
    """A copy of `batch` (pandas or a dict of numpy columns) with `estrato` (int8, 0 = unknown) and `cluster`
    (int16, the nearest train centroid after standardizing with the train mean/std) added."""
    n = _rows(batch)
    if state.estrato_column:
        estrato = assign_estrato(_numeric(batch, state.estrato_column), state.estrato_thresholds)
    else:
        estrato = np.zeros(n, dtype=np.int8)
    if state.cluster_features and state.centroids:
        X = cluster_matrix(batch, state.cluster_features, state.log_scale)
        Z = standardize(X, np.array(state.mean), np.array(state.std))
        cluster = nearest(Z, np.array(state.centroids, dtype=np.float64))[0].astype(np.int16)
    else:
        cluster = np.zeros(n, dtype=np.int16)
    out: MutableMapping[str, Any] = batch.copy() if isinstance(batch, pd.DataFrame) else dict(batch)
    out[ESTRATO] = estrato
    out[CLUSTER] = cluster
    return out  # type: ignore[return-value]
