"""Segmentation stage: fit estrato rules and k-means clusters on the training split; publish
`segment/segment_state.json`. The feature data is not rewritten: train and infer apply `assign_segments` per batch.

One pass over the Parquet parts pulls the few columns the fit needs into the object store (one numpy block per
Ray Data block); every later step (moments, init sample, each Lloyd iteration) is a Ray task per block whose
small result is merged on the driver.
"""

from __future__ import annotations

import logging
from typing import Any, Dict

import ray

from kon_ray import storage
from kon_ray.context import RunContext
from kon_ray.segment.fit import fit_segment_state, prepare_block
from kon_ray.segment.io import read_split, require_columns, split_dir
from kon_ray.segment.state import STATE_FILE

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> Dict[str, Any]:
    dataset = ctx.config.dataset
    seg = dataset.segment
    train = split_dir(ctx.input_dir("preprocess"), "train")
    # the estrato column may also be a cluster feature: read each column once
    inputs = list(dict.fromkeys(([seg.estrato_column] if seg.estrato_column else []) + list(seg.cluster_features)))
    require_columns(train, [dataset.id_column, *inputs], "segmentation (dataset.segment)")
    if not seg.estrato_column:
        log.warning("dataset.segment.estrato_column is not set: every record gets estrato 0 (unknown)")

    blocks = (
        read_split(train, [dataset.id_column, *inputs])
        .map_batches(
            prepare_block,
            batch_format="numpy",
            fn_kwargs=dict(
                id_column=dataset.id_column,
                estrato_column=seg.estrato_column,
                thresholds=list(seg.estrato_thresholds),
                features=list(seg.cluster_features),
                seed=ctx.config.seed,
                log_scale=seg.cluster_log_scale,
            ),
        )
        .to_numpy_refs()
    )
    state, facts = fit_segment_state(
        _ray_map(blocks),
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
    log.info(
        "segment: %d train rows, %d clusters, k-means %d iterations (converged: %s)",
        facts["rows"], len(state.centroids), state.iterations, state.converged,
    )
    return {
        "rows": facts["rows"],
        "clusters": len(state.centroids),
        "kmeans_iterations": state.iterations,
        "kmeans_converged": state.converged,
        "kmeans_inertia": state.inertia[-1] if state.inertia else 0.0,
        **{f"estrato_{k}_rows": v for k, v in facts["estrato_counts"].items()},
    }


@ray.remote(num_cpus=1)
def _apply(fn, block, *args):
    return fn(block, *args)


def _ray_map(refs):
    """map_blocks over blocks already in the object store: one small task per block, results to the driver."""

    def map_blocks(fn, *args):
        return ray.get([_apply.remote(fn, ref, *args) for ref in refs])

    return map_blocks
