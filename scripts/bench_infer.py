"""Benchmark: kon_ray's batch scoring (Ray Data map_batches over an actor pool of kon_ray.infer.score.Scorer, from
the features Parquet to the predictions Parquet) against plain XGBoost in one process (read the same Parquet with
pyarrow, one float32 matrix, Booster.inplace_predict with every core, write the predictions), in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_infer.py             # 1M rows x 240 features
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_infer.py --rows 10000000

Prints both times and the speed-up (goal >= 1.6x on 2 cores), and checks that both produce the same
probabilities. Ray's start and the model training are not timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--actors", type=int, default=None, help="default: cluster.train_workers")
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import xgboost as xgb

    from kon_ray.cluster.config import ClusterConfig
    from kon_ray.infer.score import Scorer
    from kon_ray.segment.io import read_split
    from kon_ray.segment.state import SegmentState
    from kon_ray.train.boost import xgb_params
    from kon_ray.train.config import ModelConfig
    from kon_ray.train.data import model_features
    from kon_ray.train.synthetic import CLASS_LABELS, feature_names, learnable_matrix
    from kon_ray.train.stage import _write_model_folder

    cluster = ClusterConfig()
    actors = args.actors or cluster.train_workers
    cores = os.cpu_count() or 1
    base = feature_names(args.features)
    features = model_features(base)
    root = tempfile.mkdtemp(prefix="bench_infer_")
    try:
        # -- data: Parquet parts in the preprocess layout (one population, no segmentation inputs) ---------------
        source = os.path.join(root, "current")
        os.makedirs(source)
        for i, start in enumerate(range(0, args.rows, args.rows_per_file)):
            n = min(args.rows_per_file, args.rows - start)
            X, _ = learnable_matrix(n, args.features, len(CLASS_LABELS), seed=start)
            table = pa.table({**{f: X[:, j] for j, f in enumerate(base)},
                              "customer_id": np.arange(start, start + n, dtype=np.int64),
                              "population": pa.array(["domestic"] * n)})
            pq.write_table(table, os.path.join(source, f"part-{i:05d}.parquet"))
        # -- model: trained on a sample, saved as the train stage would ------------------------------------------
        X, y = learnable_matrix(50_000, args.features, len(CLASS_LABELS), seed=99)
        X = np.hstack([X, np.zeros((len(X), 2), np.float32)])  # estrato, cluster: 0 here
        params = xgb_params(ModelConfig().__dict__, len(CLASS_LABELS), nthread=cores, seed=0)
        booster = xgb.train(params, xgb.QuantileDMatrix(X, label=y), args.rounds)
        ckpt = os.path.join(root, "ckpt")
        os.makedirs(ckpt)
        booster.save_model(os.path.join(ckpt, "model.ubj"))
        seg_dir = os.path.join(root, "segment")
        os.makedirs(seg_dir)
        with open(os.path.join(seg_dir, "segment_state.json"), "w") as out:
            out.write(SegmentState("", [], [], [], [], []).to_json())
        folder = os.path.join(root, "models", "domestic")
        meta = {"population": "domestic", "features": features, "class_labels": list(CLASS_LABELS)}
        _write_model_folder(folder, ckpt, features, meta, root, seg_dir)
        print(f"data: {args.rows:,} rows x {args.features} features in {len(os.listdir(source))} Parquet parts; "
              f"model {args.rounds} rounds x {len(CLASS_LABELS)} classes; {cores} cores")

        # -- plain: one process -------------------------------------------------------------------------------
        t0 = time.perf_counter()
        table = pq.read_table(source, columns=base + ["customer_id"])
        matrix = np.empty((table.num_rows, len(features)), dtype=np.float32)
        for j, f in enumerate(base):
            matrix[:, j] = table.column(f).to_numpy()
        matrix[:, -2:] = 0
        t1 = time.perf_counter()
        plain_probs = booster.inplace_predict(matrix)
        t2 = time.perf_counter()
        out = {"customer_id": table.column("customer_id"), "predicted": pa.array(np.asarray(CLASS_LABELS)[plain_probs.argmax(1)])}
        out.update({f"prob_{c}": plain_probs[:, k] for k, c in enumerate(CLASS_LABELS)})
        pq.write_table(pa.table(out), os.path.join(root, "plain.parquet"))
        plain_s = time.perf_counter() - t0
        print(f"plain (pyarrow + Booster.inplace_predict, nthread={cores}): {plain_s:.1f} s "
              f"(read+matrix {t1 - t0:.1f} s, predict {t2 - t1:.1f} s, write {plain_s - (t2 - t0):.1f} s)")
        del matrix, table

        # -- kon_ray: Ray Data actor pool ---------------------------------------------------------------------
        ray.init(num_cpus=cores + cluster.data_cpu_reserve, object_store_memory=int(2 * 1024**3),
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
        from kon_ray.infer.stage import BATCH_ROWS

        def score(out_dir: str) -> float:
            t = time.perf_counter()
            read_split(source, base + ["customer_id", "population"]).map_batches(
                Scorer, fn_constructor_kwargs=dict(model_folders=[folder], id_column="customer_id", target_column=None,
                                                   nthread=cluster.cpus_per_train_worker),
                batch_format="numpy", batch_size=BATCH_ROWS, concurrency=actors,
                num_cpus=cluster.cpus_per_train_worker,
            ).write_parquet(out_dir)
            return time.perf_counter() - t

        warm = score(os.path.join(root, "warmup"))  # first run pays for worker processes and imports
        kon_s = score(os.path.join(root, "kon"))
        print(f"kon_ray (Ray Data, {actors} Scorer actors x {cluster.cpus_per_train_worker} thread): {kon_s:.1f} s "
              f"(first run incl. worker start: {warm:.1f} s)")
        print(f"speed-up plain / kon_ray: {plain_s / kon_s:.2f}x (goal >= 1.6x); first run: {plain_s / warm:.2f}x")

        kon = pq.read_table(os.path.join(root, "kon")).to_pandas().sort_values("customer_id")
        probs = kon[[f"prob_{c}" for c in CLASS_LABELS]].to_numpy()
        np.testing.assert_allclose(probs, plain_probs[kon["customer_id"].to_numpy()], rtol=1e-5, atol=1e-6)
        print("probabilities: identical to plain (rtol 1e-5)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
