"""Test scaffolding (also used by scripts/bench_*.py): deterministic, learnable multiclass data, and a writer for
the preprocess stage's published layout (features/{train,test,current}/ Parquet parts + split_summary.json), so
that segment, train and infer can be exercised without the upstream stages."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from kon_ray.features.state import STATE_VERSION

CLASS_LABELS = ("alto_consumo", "bajo_consumo", "moroso", "regular")


def learnable_matrix(rows: int, features: int, classes: int, seed: int = 0,
                     informative: int = 12) -> Tuple[np.ndarray, np.ndarray]:
    """(X float32 rows x features, y int32 in 0..classes-1): y is the argmax of a noisy linear score of the first
    `informative` features plus one interaction, so a tree model learns it well but not perfectly."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    k = min(informative, features)
    W = np.random.default_rng(seed + 1).standard_normal((k, classes)).astype(np.float32)
    score = X[:, :k] @ W
    score[:, 0] += 1.5 * (X[:, 0] * X[:, min(1, features - 1)] > 0.5)
    score += 0.6 * rng.standard_normal(score.shape, dtype=np.float32)
    return X, score.argmax(axis=1).astype(np.int32)


def feature_names(features: int) -> List[str]:
    return [f"f_{i:03d}" for i in range(features)]


def make_split_frame(
    rows: int,
    features: int = 8,
    seed: int = 0,
    labels: Sequence[str] = CLASS_LABELS,
    industrial_share: float = 0.4,
    id_start: int = 0,
) -> pd.DataFrame:
    """One split in the preprocess layout: f_000.. (float32), customer_id, record_date, segment (labels),
    population, and the raw segmentation inputs avaluo (estrato) and kwh, bill (clusters)."""
    X, y = learnable_matrix(rows, features, len(labels), seed)
    rng = np.random.default_rng(seed + 100)
    frame = pd.DataFrame(X, columns=feature_names(features))
    frame["customer_id"] = np.arange(id_start, id_start + rows, dtype=np.int64)
    frame["record_date"] = pd.Timestamp("2026-01-01").date()
    frame["segment"] = np.asarray(labels, dtype=object)[y]
    frame["population"] = np.where(rng.random(rows) < industrial_share, "industrial", "domestic")
    avaluo = rng.uniform(0, 6, rows)
    avaluo[rng.random(rows) < 0.05] = np.nan
    frame["avaluo"] = avaluo
    frame["kwh"] = np.abs(X[:, 0]) * 100 + rng.uniform(0, 5, rows)
    frame["bill"] = frame["kwh"] * 900 + rng.normal(0, 100, rows)
    return frame


def write_features_dir(
    run_dir: str, splits: Dict[str, pd.DataFrame], features: int, parts: int = 2
) -> str:
    """Write `run_dir/features/<split>/part-*.parquet` and split_summary.json; return the features folder."""
    root = os.path.join(run_dir, "features")
    for split, frame in splits.items():
        folder = os.path.join(root, split)
        os.makedirs(folder, exist_ok=True)
        for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
            frame.iloc[chunk].to_parquet(os.path.join(folder, f"part-{i:05d}.parquet"), index=False)
    summary = {"features": feature_names(features), "rows": {s: len(f) for s, f in splits.items()}}
    with open(os.path.join(root, "split_summary.json"), "w") as out:
        json.dump(summary, out)
    # the preprocess stage's state format (kon_ray/features/state.py): a version and named features
    with open(os.path.join(root, "feature_state.json"), "w") as out:
        json.dump({"version": STATE_VERSION, "synthetic": True,
                   "features": [{"name": name} for name in feature_names(features)]}, out)
    return root


def synthetic_context(run_dir: str, output_dir: str, *, segment=None, model=None, cluster=None, seed: int = 42):
    """A RunContext over a synthetic run folder, built from the schemas' defaults (tests and benchmarks): the
    dataset declares the columns `make_split_frame` writes and `population` as its population column."""
    from dataclasses import asdict

    from kon_ray.cluster.config import LocalCluster
    from kon_ray.config import DatasetConfig, KonConfig
    from kon_ray.context import RunContext
    from kon_ray.drift.config import DriftConfig
    from kon_ray.segment.config import SegmentConfig
    from kon_ray.tracking.config import TrackingConfig
    from kon_ray.train.config import ModelConfig

    dataset = DatasetConfig(
        name="SYNTH",
        path=os.path.join(run_dir, "raw"),
        population_column="population",
        segment=segment or SegmentConfig(
            estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=["kwh", "bill"], clusters=3
        ),
    )
    config = KonConfig(
        dataset=dataset,
        model=model or ModelConfig(),
        cluster=cluster or LocalCluster(),
        drift=DriftConfig(),
        tracking=TrackingConfig(),
        output_dir=run_dir,
        seed=seed,
    )
    return RunContext(config=config, plain=asdict(config), run_dir=run_dir, output_dir=output_dir)
