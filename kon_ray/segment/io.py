"""Reading the preprocess stage's published splits (features/{train,test,current}/) for segment, train and infer:
the schema is checked on the driver first, so a missing column is one DataError naming it and the folder, never a
failure inside a Ray task."""

from __future__ import annotations

from typing import List

import pyarrow.parquet as pq

from kon_ray import storage
from kon_ray.errors import DataError


def split_dir(features_dir: str, split: str) -> str:
    return storage.join(features_dir, split)


def split_files(path: str) -> List[str]:
    """The Parquet parts of a split folder as paths `storage.filesystem` opens (s3:// kept); [] for an empty split."""
    prefix = "s3://" if storage.is_s3(path) else ""
    return [prefix + f for f in storage.list_files(path)]


def split_columns(path: str) -> List[str]:
    """Column names of a split folder's Parquet parts (the first part's schema)."""
    files = storage.list_files(path)
    if not files:
        raise DataError(f"{path}: no Parquet parts found (did the preprocess stage publish this split?)")
    fs, _ = storage.filesystem(path)
    return list(pq.read_schema(files[0], filesystem=fs).names)


def require_split_columns(path: str, columns: List[str], what: str) -> List[str]:
    """The folder's columns, or a DataError naming the first of `columns` it lacks and what needed it."""
    present = split_columns(path)
    have = set(present)
    missing = [c for c in columns if c not in have]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{path}: column {missing[0]!r}{more} needed by {what} is missing")
    return present

