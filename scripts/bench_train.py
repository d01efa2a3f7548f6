"""Benchmark: kon_ray's distributed training (XGBoostTrainer + kon_ray.train.worker.train_loop) against plain
`xgboost.train` on the same matrix, parameters, rounds and total thread count, in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_train.py            # 1M x 240, 5 classes
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_train.py --rows 10000000

Prints both times, their ratio (goal <= 1.25), where kon_ray's time went (Ray Train start, data ingest per worker,
QuantileDMatrix build, boosting) and both models' holdout mlogloss and accuracy (goal: within 0.5%).
Early stopping is off in both so they train the same number of rounds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _chunk(batch, rows: int, features: int, classes: int, seed: int):
    from kon_ray.train.synthetic import learnable_matrix

    start = int(batch["id"][0])
    X, y = learnable_matrix(rows, features, classes, seed=seed + start)
    return {"X": X, "y": y.astype(np.float32), "valid": np.zeros(rows, dtype=bool)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--workers", type=int, default=None, help="default: cluster.train_workers (conf/cluster)")
    parser.add_argument("--cpus-per-worker", type=int, default=None)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    args = parser.parse_args()

    import ray
    import xgboost as xgb

    from kon_ray.cluster.config import ClusterConfig
    from kon_ray.infer import metrics
    from kon_ray.train.boost import xgb_params
    from kon_ray.train.config import ModelConfig
    from kon_ray.train.stage import fit
    from kon_ray.train.synthetic import learnable_matrix
    from kon_ray.train.worker import MODEL_FILE

    cluster = ClusterConfig()
    workers = args.workers or cluster.train_workers
    cpus = args.cpus_per_worker or cluster.cpus_per_train_worker
    threads = workers * cpus
    model = {**ModelConfig().__dict__, "max_depth": args.max_depth}
    params = xgb_params(model, args.classes, nthread=cpus, seed=0)
    chunks = -(-args.rows // args.chunk_rows)
    print(f"data: {args.rows:,} x {args.features} float32, {args.classes} classes, {args.rounds} rounds, "
          f"depth {args.max_depth}; kon_ray {workers} workers x {cpus} CPU vs plain xgboost nthread={threads}")

    # the same rows for both: chunk i is learnable_matrix(chunk_rows, seed=i*chunk_rows)
    X = np.concatenate([_chunk({"id": [i * args.chunk_rows]}, args.chunk_rows, args.features, args.classes, 0)["X"]
                        for i in range(chunks)])[: args.rows]
    y = np.concatenate([_chunk({"id": [i * args.chunk_rows]}, args.chunk_rows, args.features, args.classes, 0)["y"]
                        for i in range(chunks)])[: args.rows]
    Xh, yh = learnable_matrix(100_000, args.features, args.classes, seed=10**9)

    # -- plain xgboost --------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=model["max_bin"], nthread=threads)
    t1 = time.perf_counter()
    plain = xgb.train({**params, "nthread": threads}, dtrain, args.rounds)
    plain_s = time.perf_counter() - t0
    print(f"plain xgboost.train: {plain_s:.1f} s (QuantileDMatrix {t1 - t0:.1f} s, boosting {plain_s - (t1 - t0):.1f} s)")
    del dtrain, X, y

    # -- kon_ray ---------------------------------------------------------------------------------------------------
    ray.init(num_cpus=threads + cluster.data_cpu_reserve, object_store_memory=int(4 * 1024**3),
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    data = ray.data.range(chunks, override_num_blocks=chunks).map_batches(
        _chunk, batch_size=1, fn_kwargs=dict(rows=args.chunk_rows, features=args.features, classes=args.classes, seed=0)
    ).materialize()  # the data sits in Ray, as the preprocess stage's output would; not timed
    loop_config = {"params": params, "features": args.features, "num_boost_round": args.rounds,
                   "early_stopping_rounds": 0, "checkpoint_frequency": 10, "max_bin": model["max_bin"],
                   "nthread": cpus}
    # 1 validation row per worker keeps the loop's evaluation path without changing the training rows much
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        fitted = fit(data, loop_config, workers=workers, cpus_per_worker=cpus, storage_path=scratch,
                     name="bench", max_failures=0)
        kon_s = time.perf_counter() - t0
        kon = xgb.Booster()
        kon.load_model(os.path.join(fitted["checkpoint_dir"], MODEL_FILE))
        fitted["cleanup"]()
    w = fitted["metrics"]
    start = kon_s - w["ingest_s"] - w["dmatrix_s"] - w["boost_s"]
    print(f"kon_ray XGBoostTrainer: {kon_s:.1f} s (start/finish {start:.1f} s, ingest {w['ingest_s']:.1f} s, "
          f"QuantileDMatrix {w['dmatrix_s']:.1f} s, boosting {w['boost_s']:.1f} s)")
    print(f"ratio kon_ray / plain: {kon_s / plain_s:.2f} (goal <= 1.25); "
          f"without the fixed start: {(kon_s - start) / plain_s:.2f}")

    for name, booster in (("plain", plain), ("kon_ray", kon)):
        probs = booster.inplace_predict(Xh)
        cm = metrics.confusion_counts(yh, probs.argmax(axis=1), args.classes)
        acc = metrics.from_confusion(cm, [str(i) for i in range(args.classes)])["accuracy"]
        print(f"holdout {name}: mlogloss {metrics.logloss_sum(yh, probs) / len(yh):.4f}, accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
