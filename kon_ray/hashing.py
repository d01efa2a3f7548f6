"""A deterministic pseudo-random number per record id, independent of block layout, worker count and order.

Used to pick the split's balanced sample and fit sample (kon_ray/features/split.py), the k-means initialisation
sample and the training validation split: the same ids give the same choice on every run and every cluster shape,
which a seeded `random_sample` over blocks does not promise.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer over uint64 (wrapping arithmetic); a bijection."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def id_unit_interval(ids: np.ndarray, salt: int = 0) -> np.ndarray:
    """splitmix64(id + salt) mapped to [0, 1): a fixed, well-mixed value per id (float64)."""
    with np.errstate(over="ignore"):
        z = splitmix64(np.asarray(ids).astype(np.int64).view(np.uint64) + np.uint64(salt % 2**64))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)
