"""Planted data for the performance tests: a three-class model whose probabilities are exactly P(y | x) (perfectly
calibrated by construction) unless a test says otherwise; labels drawn from a chosen P(y | x)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CLASSES = ("a", "b", "c")


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def model(x: np.ndarray, scale: float = 1.5) -> np.ndarray:
    """The model's probabilities for inputs x: class a for large x, b for small x, c in between."""
    return softmax(np.column_stack([x, -x, np.full_like(x, 0.4)]) * scale)


def draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class index per row, drawn from the row's probabilities."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)


def table(probs: np.ndarray, labels: Optional[np.ndarray], rng: np.random.Generator, months: int = 1,
          with_labels: bool = True) -> pa.Table:
    n = len(probs)
    columns = {f"prob_{name}": probs[:, k] for k, name in enumerate(CLASSES)}
    if with_labels and labels is not None:
        columns["label"] = np.array(CLASSES)[labels]
    columns["month"] = np.array([f"2024-{1 + i * months // n:02d}" for i in range(n)])
    columns["estrato"] = rng.choice(np.array(["1", "2", "3"]), size=n)
    return pa.table(columns)


def write(path: Path, data: pa.Table, row_group_size: Optional[int] = None) -> Path:
    pq.write_table(data, path, row_group_size=row_group_size)
    return path
