"""Fitting the segmentation over blocks, whatever runs them.

`fit_segment_state` takes `map_blocks(fn, *args) -> [fn(block, *args) for every block]`: the stage passes one
that runs Ray tasks over the training data's blocks held in the object store, tests pass a list comprehension.
The algorithm only ever sees per-block results (moments, a sample, Lloyd partial sums) and merges them here.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from kon_ray.hashing import id_unit_interval
from kon_ray.segment.estrato import assign_estrato
from kon_ray.segment.kmeans import (
    LloydPartial,
    Moments,
    center_shift,
    feature_moments,
    kmeans_pp_init,
    lloyd_partial,
    merge_lloyd,
    merge_moments,
    standardize,
    tolerance_threshold,
    update_centroids,
)
from kon_ray.segment.state import SegmentState, cluster_matrix

Block = Dict[str, np.ndarray]  # {"x": rows x d float64, "u": per-id value in [0, 1), "estrato": int8}
MapBlocks = Callable[..., List[Any]]

INIT_SAMPLE_ROWS = 20_000  # k-means++ runs on about this many rows, chosen by id hash


def prepare_block(
    batch: Any, id_column: str, estrato_column: str, thresholds: Sequence[float], features: List[str], seed: int,
    log_scale: bool = False,
) -> Block:
    """The few values the fit needs from a batch of the training data (pandas or dict of numpy columns)."""
    ids = np.asarray(batch[id_column])
    estrato_values = (
        np.asarray(batch[estrato_column], dtype=np.float64) if estrato_column else np.full(len(ids), np.nan)
    )
    return {
        "x": cluster_matrix(batch, features, log_scale),
        "u": id_unit_interval(ids, salt=seed),
        "estrato": assign_estrato(estrato_values, thresholds if estrato_column else []),
    }


def block_summary(block: Block) -> tuple[int, Moments, np.ndarray]:
    return len(block["u"]), feature_moments(block["x"]), np.bincount(block["estrato"], minlength=7)


def block_sample(block: Block, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    keep = block["u"] < fraction
    return block["u"][keep], block["x"][keep]


def _sample(map_blocks: MapBlocks, fraction: float) -> np.ndarray:
    """The rows whose id hash is below `fraction`, ordered by that hash: the same sample in the same order
    however the data is split into blocks, so k-means++ picks the same centres."""
    parts = map_blocks(block_sample, fraction)
    u = np.concatenate([p[0] for p in parts])
    x = np.concatenate([p[1] for p in parts], axis=0)
    return x[np.argsort(u, kind="stable")]


def block_lloyd(block: Block, mean: np.ndarray, std: np.ndarray, centroids: np.ndarray) -> LloydPartial:
    return lloyd_partial(standardize(block["x"], mean, std), centroids)


def fit_segment_state(
    map_blocks: MapBlocks,
    *,
    estrato_column: str,
    thresholds: Sequence[float],
    features: List[str],
    clusters: int,
    iterations: int,
    tolerance: float,
    seed: int,
    log_scale: bool = False,
    sample_rows: int = INIT_SAMPLE_ROWS,
) -> tuple[SegmentState, Dict[str, Any]]:
    """Fit standardization and k-means centroids; return the state and small facts for the stage's metrics.
    (`log_scale` only records in the state that the blocks' features were log-scaled by prepare_block.)"""
    summaries = map_blocks(block_summary)
    rows = int(sum(s[0] for s in summaries))
    estrato_counts = sum(s[2] for s in summaries)
    facts: Dict[str, Any] = {
        "rows": rows, "estrato_counts": {str(i): int(c) for i, c in enumerate(estrato_counts) if c}
    }
    base: Dict[str, Any] = dict(estrato_column=estrato_column, estrato_thresholds=[float(t) for t in thresholds],
                                train_rows=rows, log_scale=log_scale)
    if not features:
        return SegmentState(cluster_features=[], mean=[], std=[], centroids=[], **base), facts

    moments = merge_moments(s[1] for s in summaries)
    mean, std = moments.mean, moments.std
    fraction = 1.0 if rows <= sample_rows else sample_rows / rows
    sample = _sample(map_blocks, fraction)
    if len(sample) == 0:  # a very unlucky hash draw: fall back to every row
        sample = _sample(map_blocks, 1.0)
    centroids = kmeans_pp_init(standardize(sample, mean, std), clusters, seed)

    # Lloyd's iterations until the centres stop moving (kon_ray/segment/kmeans.py: sklearn's rule) or the cap
    threshold = tolerance_threshold(tolerance, moments, rows)
    inertia: List[float] = []
    converged = False
    merged = None
    shift = float("inf")
    for _ in range(iterations):
        merged = merge_lloyd(map_blocks(block_lloyd, mean, std, centroids))
        inertia.append(merged.inertia)
        updated = update_centroids(centroids, merged)
        shift = center_shift(centroids, updated)
        centroids = updated
        if shift <= threshold:
            converged = True
            break
    assert merged is not None
    facts.update(center_shift=shift, shift_threshold=threshold)
    state = SegmentState(
        cluster_features=list(features),
        mean=mean.tolist(),
        std=std.tolist(),
        centroids=centroids.tolist(),
        inertia=inertia,
        iterations=len(inertia),
        converged=converged,
        max_iterations=iterations,
        tolerance=tolerance,
        cluster_sizes=[int(c) for c in merged.counts],
        **base,
    )
    return state, facts
