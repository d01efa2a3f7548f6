"""Segmentation stage: fit estrato rules and k-means clusters on the training split; publish
`segment/segment_state.json`. The feature data is not rewritten: train and infer apply `assign_segments` per batch.

One pass over the Parquet parts (work units of the execution layer) pulls the few columns the fit needs into
numpy blocks; every later step (moments, init sample, each Lloyd iteration) maps over those blocks and merges the
small results on the driver. Small blocks stay in the driver (a numpy pass there is cheaper than a task per block
and iteration); large ones stay in Ray's object store and each step is a task per block (kon_ray/execution.py).
"""

from __future__ import annotations

import logging
from typing import Any, Dict

from kon_ray import execution, storage
from kon_ray.context import RunContext
from kon_ray.segment.fit import fit_segment_state, prepare_block
from kon_ray.segment.io import require_split_columns, split_dir, split_files
from kon_ray.segment.state import STATE_FILE

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> Dict[str, Any]:
    dataset = ctx.config.dataset
    seg = dataset.segment
    train = split_dir(ctx.input_dir("preprocess"), "train")
    # the estrato column may also be a cluster feature: read each column once
    inputs = list(dict.fromkeys(([seg.estrato_column] if seg.estrato_column else []) + list(seg.cluster_features)))
    require_split_columns(train, [dataset.id_column, *inputs], "segmentation (dataset.segment)")
    if not seg.estrato_column:
        log.warning("dataset.segment.estrato_column is not set: every record gets estrato 0 (unknown)")

    columns = [dataset.id_column, *inputs]
    units = execution.plan(split_files(train), columns)
    rows = sum(unit.rows for unit in units)
    blocks = execution.blocks(
        _prepare_unit,
        units,
        columns=columns,
        estimated_bytes=rows * (8 * len(seg.cluster_features) + 16),  # x (float64) + u (float64) + estrato
        kwargs=dict(
            id_column=dataset.id_column,
            estrato_column=seg.estrato_column,
            thresholds=list(seg.estrato_thresholds),
            features=list(seg.cluster_features),
            seed=ctx.config.seed,
            log_scale=seg.cluster_log_scale,
        ),
    )
    state, facts = fit_segment_state(
        blocks.map,
        estrato_column=seg.estrato_column,
        thresholds=seg.estrato_thresholds,
        features=list(seg.cluster_features),
        clusters=seg.clusters,
        iterations=seg.kmeans_iterations,
        tolerance=seg.kmeans_tolerance,
        seed=ctx.config.seed,
        log_scale=seg.cluster_log_scale,
    )
    storage.write_text(ctx.out(STATE_FILE), state.to_json())
    if state.centroids:
        log.info(
            "segment: %d train rows, %d clusters, k-means %s after %d iterations (cap %d): inertia %.6g, last centre "
            "shift %.3g (tolerance %.3g)", facts["rows"], len(state.centroids),
            "converged" if state.converged else "NOT converged", state.iterations, state.max_iterations,
            state.inertia[-1], facts["center_shift"], facts["shift_threshold"],
        )
    else:
        log.info("segment: %d train rows, no cluster features: every record is cluster 0", facts["rows"])
    return {
        "rows": facts["rows"],
        "clusters": len(state.centroids),
        "kmeans_iterations": state.iterations,
        "kmeans_converged": state.converged,
        "kmeans_inertia": state.inertia[-1] if state.inertia else 0.0,
        **{f"estrato_{k}_rows": v for k, v in facts["estrato_counts"].items()},
    }


def _prepare_unit(table, unit, **kwargs):
    """A work unit's rows -> the numpy block the fit needs (segment/fit.py's prepare_block)."""
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    return prepare_block(columns, **kwargs)
