"""K-means over shards: every step is a pure function on a numpy block, merged exactly on the driver.

A fit is (1) feature moments per shard -> merged mean/std (Chan's parallel formula), (2) k-means++ on a small
deterministic sample of standardized rows, (3) Lloyd iterations, each one a map over shards returning per-cluster
sums and counts that the driver adds up and divides. The merge is plain addition, so the distributed result equals
the single-array one up to floating-point summation order.

Convergence is scikit-learn's rule for Lloyd's algorithm: stop once the centres' total squared move in one
iteration (`center_shift`) is at most `tolerance` times the data's mean feature variance (`tolerance_threshold`;
default tolerance 1e-4, as sklearn's `tol`), or at the iteration cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Tuple

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Per-feature count, mean and sum of squared deviations (NaN ignored), mergeable across shards."""

    count: np.ndarray  # (d,) float64
    mean: np.ndarray  # (d,)
    m2: np.ndarray  # (d,)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation; a zero-variance or empty feature gets 1 so that standardizing maps it
        to 0 instead of dividing by zero."""
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(self.m2 / self.count)
        return np.where((self.count > 0) & (std > 0), std, 1.0)


def feature_moments(X: np.ndarray) -> Moments:
    """Moments of one block (rows x features), ignoring NaN."""
    X = np.asarray(X, dtype=np.float64)
    present = ~np.isnan(X)
    count = present.sum(axis=0).astype(np.float64)
    total = np.where(present, X, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, 0.0)
    m2 = np.where(present, (X - mean) ** 2, 0.0).sum(axis=0)
    return Moments(count, mean, m2)


def merge_moments(parts: Iterable[Moments]) -> Moments:
    """Chan et al.'s pairwise merge: exact, and stable where sum/sum-of-squares would cancel."""
    merged = None
    for part in parts:
        if merged is None:
            merged = part
            continue
        n = merged.count + part.count
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = part.mean - merged.mean
            mean = np.where(n > 0, merged.mean + delta * part.count / n, 0.0)
            m2 = np.where(n > 0, merged.m2 + part.m2 + delta**2 * merged.count * part.count / n, 0.0)
        merged = Moments(n, mean, m2)
    if merged is None:
        raise ValueError("no moments to merge")
    return merged


def standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(X - mean) / std as float64; a missing value becomes 0, the training mean, so every record gets a cluster."""
    Z: np.ndarray = np.nan_to_num((np.asarray(X, dtype=np.float64) - mean) / std, nan=0.0)
    return Z


def squared_distances(Z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(rows x k) squared Euclidean distances, computed directly (k is small) so that ties are exact."""
    out = np.empty((Z.shape[0], centroids.shape[0]), dtype=np.float64)
    for j, centre in enumerate(centroids):
        out[:, j] = ((Z - centre) ** 2).sum(axis=1)
    return out


def nearest(Z: np.ndarray, centroids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The nearest centroid per row (lowest index on a tie) and the squared distance to it."""
    d2 = squared_distances(Z, centroids)
    labels = d2.argmin(axis=1)
    return labels, d2[np.arange(len(labels)), labels]


@dataclass(frozen=True)
class LloydPartial:
    """One shard's contribution to a Lloyd step: per-cluster coordinate sums and counts, and its inertia."""

    sums: np.ndarray  # (k, d)
    counts: np.ndarray  # (k,)
    inertia: float


def lloyd_partial(Z: np.ndarray, centroids: np.ndarray) -> LloydPartial:
    """Assign the block's rows to their nearest centroid and sum them per cluster."""
    labels, d2 = nearest(Z, centroids)
    k = centroids.shape[0]
    sums = np.zeros_like(centroids, dtype=np.float64)
    np.add.at(sums, labels, Z)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return LloydPartial(sums, counts, float(d2.sum()))


def merge_lloyd(parts: Iterable[LloydPartial]) -> LloydPartial:
    parts = list(parts)
    if not parts:
        raise ValueError("no partial sums to merge")
    return LloydPartial(
        np.sum([p.sums for p in parts], axis=0), np.sum([p.counts for p in parts], axis=0),
        float(sum(p.inertia for p in parts)),
    )


def update_centroids(centroids: np.ndarray, merged: LloydPartial) -> np.ndarray:
    """New centroids = cluster means; an empty cluster keeps its previous centre rather than becoming NaN."""
    counts = merged.counts[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = merged.sums / counts
    return np.where(counts > 0, means, centroids)


def kmeans_pp_init(sample: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ seeding on a (small, deterministic) sample of standardized rows."""
    rng = np.random.default_rng(seed)
    n = sample.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one row to initialise")
    centres = [sample[rng.integers(n)]]
    d2 = ((sample - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        # fewer distinct points than k: any row will do (the extra centres stay empty and keep their place)
        idx = rng.integers(n) if total <= 0 else rng.choice(n, p=d2 / total)
        centres.append(sample[idx])
        d2 = np.minimum(d2, ((sample - sample[idx]) ** 2).sum(axis=1))
    return np.array(centres, dtype=np.float64)


def center_shift(old: np.ndarray, new: np.ndarray) -> float:
    """The sum over centres of their squared move (the squared Frobenius norm of new - old): what the convergence
    test compares with the tolerance, as scikit-learn's Lloyd k-means does."""
    return float(((new - old) ** 2).sum())


def standardized_variance(moments: Moments, rows: int) -> float:
    """The mean per-feature variance of the standardized data (`standardize`, missing values at 0) over all `rows`:
    1 for a feature with no missing values, the share present for one with some, 0 for a constant one. Computed from
    the merged moments, so it does not depend on how the data is split into blocks."""
    if rows <= 0 or len(moments.count) == 0:
        return 0.0
    var = moments.m2 / moments.std**2 / rows  # sum of squared standardized deviations / rows; mean stays 0
    return float(np.mean(var))


def tolerance_threshold(tolerance: float, moments: Moments, rows: int) -> float:
    """The absolute bound on `center_shift` below which k-means has converged: `tolerance` relative to the data's
    mean feature variance (scikit-learn's `tol`, whose default 1e-4 this also takes)."""
    return tolerance * standardized_variance(moments, rows)
