"""Benchmark: kon_ray's train stage against plain `xgboost.train` on the same matrices, in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_train.py                    # 300k rows x 240, 50 rounds
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_train.py --rows 1000000 --repeat 1
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_train.py --ray-train         # issue 13's Ray Train figures

The default (issue 28, item 2) writes a train split in the preprocess layout (tests/train/synthetic.py: 240 float32
features, 4 classes, 20% industrial as POLA has), then, with a local Ray of the training CPUs + 1 for data:
- the stage: `kon_ray.train.stage.train_all` as a run calls it (class counts, both populations in one process on
  every training CPU, one after another, model folders written), early stopping off;
- plain: per population, QuantileDMatrix of the same train and validation rows (the matrices built in memory here,
  not timed) and `xgboost.train` with the same parameters, rounds, evals and nthread = all training CPUs; the two
  times added up (the goal: the stage within 1.1x that sum);
- handing threads over: both populations side by side in one process on 1 thread each, the survivor raised to all
  threads (`Booster.set_param("nthread")`) when the other finishes: the alternative the stage did not take.
Each prints wall time and CPU-seconds (this process and its children: Ray's workers); the stage also its phases
and the training process's peak RSS against the float32 matrix. `--repeat N` runs the three N times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# the synthetic data builders live with the tests (tests/train/synthetic.py); run from the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _chunk(batch, rows: int, features: int, classes: int, seed: int):
    from tests.train.synthetic import learnable_matrix

    start = int(batch["id"][0])
    X, y = learnable_matrix(rows, features, classes, seed=seed + start)
    return {"X": X, "y": y.astype(np.float32), "valid": np.zeros(rows, dtype=bool)}


class _CpuMeter:
    """CPU-seconds of this process and its descendants (the local Ray's GCS, raylet, workers; not other users of the
    machine), sampled every 0.2 s so that processes which exit during a fit (Ray Train's workers) still count."""

    def __init__(self) -> None:
        import threading

        self._seen: dict = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True).start()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                with self._lock:
                    self._seen[(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.Error:
                pass

    def _loop(self) -> None:
        while True:
            self._sample()
            time.sleep(0.2)

    def __call__(self) -> float:
        self._sample()
        with self._lock:
            return sum(self._seen.values())


def _one_process(chunks, loop_config):
    """kon_ray.train.single's fit on blocks already in memory: the same QuantileDMatrix and boosting loop."""
    import time as _time

    from kon_ray.train.boost import boost
    from kon_ray.train.worker import build_matrices, split_batches

    t0 = _time.perf_counter()
    train, valid = split_batches(iter(chunks))
    dtrain, dvalid = build_matrices(train, valid, loop_config["features"], loop_config["max_bin"],
                                    loop_config["nthread"])
    t1 = _time.perf_counter()
    booster, _ = boost(loop_config["params"], dtrain, dvalid, loop_config["num_boost_round"], 0)
    return bytes(booster.save_raw(raw_format="ubj")), {"dmatrix_s": t1 - t0, "boost_s": _time.perf_counter() - t1}


def _one_process_refs(*args):
    blocks, config = args
    import ray

    return _one_process([ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref for ref in blocks], config)


def ray_train_main(argv) -> None:
    """The issue-13 comparison: plain, one process and Ray Train on one 1M matrix (`--ray-train`)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray-train", action="store_true")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--workers", type=int, default=None, help="default: cluster.train_workers (conf/cluster)")
    parser.add_argument("--cpus-per-worker", type=int, default=None)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    args = parser.parse_args(argv)

    import ray
    import xgboost as xgb

    _cpu_seconds = _CpuMeter()

    from kon_ray import execution
    from kon_ray.cluster.config import LocalCluster
    from kon_ray.model import metrics
    from kon_ray.train.boost import xgb_params
    from kon_ray.train.config import ModelConfig
    from kon_ray.train.stage import fit
    from kon_ray.train.worker import CHECKPOINT_MODEL as MODEL_FILE
    from tests.train.synthetic import learnable_matrix

    cluster = LocalCluster()
    workers = args.workers or cluster.train_workers
    cpus = args.cpus_per_worker or cluster.cpus_per_train_worker
    threads = workers * cpus
    model = ModelConfig(max_depth=args.max_depth)
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
    t0, c0 = time.perf_counter(), time.process_time()
    dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=model.max_bin, nthread=threads)
    t1 = time.perf_counter()
    plain = xgb.train({**params, "nthread": threads}, dtrain, args.rounds)
    plain_s, plain_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"plain xgboost.train: {plain_s:.1f} s, {plain_cpu:.1f} CPU-s (QuantileDMatrix {t1 - t0:.1f} s, "
          f"boosting {plain_s - (t1 - t0):.1f} s)")
    del dtrain, X, y

    # -- kon_ray ---------------------------------------------------------------------------------------------------
    ray.init(num_cpus=threads + cluster.data_cpu_reserve, object_store_memory=int(4 * 1024**3),
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    data = ray.data.range(chunks, override_num_blocks=chunks).map_batches(
        _chunk, batch_size=1, fn_kwargs=dict(rows=args.chunk_rows, features=args.features, classes=args.classes, seed=0)
    ).materialize()  # the data sits in Ray, as the preprocess stage's output would; not timed
    loop_config = {"params": params, "features": args.features, "num_boost_round": args.rounds,
                   "early_stopping_rounds": 0, "checkpoint_frequency": 10, "max_bin": model.max_bin,
                   "nthread": cpus}
    one_config = {**loop_config, "params": {**params, "nthread": threads}, "nthread": threads}

    # -- fixed cost: a tiny fit each way (2,000 rows, 1 round) ----------------------------------------------------
    tiny_rows = 2_000
    tiny_blocks = [_chunk({"id": [i]}, tiny_rows // 8, args.features, args.classes, 0) for i in range(8)]
    for block in tiny_blocks:
        block["valid"][::10] = True
    tiny = ray.data.from_items(tiny_blocks).materialize()
    tiny_config = {**loop_config, "num_boost_round": 1}
    execution.run_remote(_one_process, [tiny_blocks[0]], {**one_config, "num_boost_round": 1}, num_cpus=threads)
    for _ in range(2):  # the first of each pays for importing xgboost in a fresh worker; the second is the figure
        t0, c0 = time.perf_counter(), _cpu_seconds()
        with tempfile.TemporaryDirectory() as scratch:
            fitted = fit(tiny, tiny_config, workers=workers, cpus_per_worker=cpus, storage_path=scratch,
                         name="tiny", max_failures=0)
            fitted["cleanup"]()
        ray_tiny, ray_tiny_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        t0, c0 = time.perf_counter(), _cpu_seconds()
        execution.run_remote(_one_process, tiny_blocks, {**one_config, "num_boost_round": 1}, num_cpus=threads)
        one_tiny, one_tiny_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    print(f"fixed cost, {tiny_rows:,} rows x 1 round: Ray Train fit {ray_tiny:.1f} s, {ray_tiny_cpu:.1f} CPU-s; "
          f"one-process fit {one_tiny:.2f} s, {one_tiny_cpu:.1f} CPU-s")

    # -- kon_ray, one process --------------------------------------------------------------------------------------
    refs = [ref for ref in data.to_numpy_refs()]
    t0, c0 = time.perf_counter(), _cpu_seconds()
    raw, one_w = execution.run_remote(_one_process_refs, refs, one_config, num_cpus=threads)
    one_s, one_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    one = xgb.Booster()
    one.load_model(bytearray(raw))
    print(f"kon_ray one process (nthread={threads}): {one_s:.1f} s, {one_cpu:.1f} CPU-s (QuantileDMatrix "
          f"{one_w['dmatrix_s']:.1f} s, boosting {one_w['boost_s']:.1f} s); ratio to plain {one_s / plain_s:.2f}")

    # -- kon_ray, Ray Train ----------------------------------------------------------------------------------------
    t0, c0 = time.perf_counter(), _cpu_seconds()
    with tempfile.TemporaryDirectory() as scratch:
        fitted = fit(data, loop_config, workers=workers, cpus_per_worker=cpus, storage_path=scratch,
                     name="bench", max_failures=0)
        kon_s, kon_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        kon = xgb.Booster()
        kon.load_model(os.path.join(fitted["checkpoint_dir"], MODEL_FILE))
        fitted["cleanup"]()
    w = fitted["metrics"]
    start = kon_s - w["ingest_s"] - w["dmatrix_s"] - w["boost_s"]
    print(f"kon_ray Ray Train ({workers} workers x {cpus} CPU): {kon_s:.1f} s, {kon_cpu:.1f} CPU-s (start/finish "
          f"{start:.1f} s, ingest {w['ingest_s']:.1f} s, QuantileDMatrix {w['dmatrix_s']:.1f} s, boosting "
          f"{w['boost_s']:.1f} s)")
    print(f"ratio Ray Train / plain: {kon_s / plain_s:.2f} (goal <= 1.15); without the fixed start: "
          f"{(kon_s - start) / plain_s:.2f}; one process / Ray Train: {one_s / kon_s:.2f}")

    for name, booster in (("plain", plain), ("kon_ray one process", one), ("kon_ray Ray Train", kon)):
        probs = booster.inplace_predict(Xh)
        cm = metrics.confusion_counts(yh, probs.argmax(axis=1), args.classes).tolist()
        acc = metrics.from_confusion(cm, [str(i) for i in range(args.classes)])["accuracy"]
        print(f"holdout {name}: mlogloss {metrics.logloss_sum(yh, probs) / len(yh):.4f}, accuracy {acc:.4f}")


def _stage_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--industrial-share", type=float, default=0.2)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-handover", action="store_true")
    return parser.parse_args(argv)


def _plain_matrices(train_dir: str, features, state, classes, seed: int, fraction: float):
    """{population: (X_train, y_train, X_valid, y_valid)} read here with pandas: the rows and columns the stage
    trains on (segments assigned with the same state, the same id-hash validation split)."""
    import pandas as pd

    from kon_ray.segment.state import assign_segments
    from kon_ray.train.data import encode_labels, validation_mask

    frame = pd.read_parquet(train_dir)
    out = {}
    for population in ("domestic", "industrial"):
        rows = assign_segments(frame[frame["population"] == population], state)
        X = rows[features].to_numpy(dtype=np.float32)
        y = encode_labels(rows["segment"].to_numpy(), classes[population])
        v = validation_mask(rows["customer_id"].to_numpy(), fraction, seed)
        out[population] = (X[~v], y[~v], X[v], y[v])
    return out


def _plain(matrices, params, rounds: int, max_bin: int, threads: int):
    """Plain `xgboost.train`, with one callback: each round's seed from (seed, round), as kon_ray's boosting loop
    sets it for exact resumes (kon_ray/train/boost.py `round_seed`), so that the same matrices give the same model
    and the comparison checks the stage trained on them."""
    import xgboost as xgb

    from kon_ray.train.boost import round_seed

    class RoundSeed(xgb.callback.TrainingCallback):
        def __init__(self, seed: int) -> None:
            super().__init__()
            self.seed = seed

        def before_iteration(self, model, epoch, evals_log) -> bool:
            model.set_param({"seed": round_seed(self.seed, epoch)})
            return False

    seconds, models = {}, {}
    for population, (X, y, Xv, yv) in matrices.items():
        t0 = time.perf_counter()
        dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=max_bin, nthread=threads)
        dvalid = xgb.QuantileDMatrix(Xv, label=yv, ref=dtrain, max_bin=max_bin, nthread=threads)
        models[population] = xgb.train({**params[population], "nthread": threads}, dtrain, rounds,
                                       evals=[(dtrain, "train"), (dvalid, "validation")], verbose_eval=False,
                                       callbacks=[RoundSeed(int(params[population]["seed"]))])
        seconds[population] = time.perf_counter() - t0
    return seconds, models


def _handover(matrices, params, rounds: int, max_bin: int, threads: int) -> float:
    """Both fits side by side in this process, 1 thread each; the one still running takes every thread when the
    other ends. Wall seconds from the first matrix to the last round."""
    import threading

    import xgboost as xgb

    from kon_ray.train.boost import boost

    lock, running, boosters = threading.Lock(), set(matrices), {}

    def fit(population: str) -> None:
        X, y, Xv, yv = matrices[population]
        dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=max_bin, nthread=1)
        dvalid = xgb.QuantileDMatrix(Xv, label=yv, ref=dtrain, max_bin=max_bin, nthread=1)

        def on_round(bst, progress) -> None:
            with lock:
                alone = running == {population}
            if alone and bst.attr("alone") is None:
                bst.set_param({"nthread": threads})
                bst.set_attr(alone=str(progress.rounds))
        boosters[population] = boost({**params[population], "nthread": 1}, dtrain, dvalid, rounds, 0,
                                     on_round=on_round)[0]
        with lock:
            running.discard(population)

    t0 = time.perf_counter()
    workers = [threading.Thread(target=fit, args=(population,)) for population in matrices]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - t0


def _plain_task(train_dir, features, state, classes, seed, fraction, params, rounds, max_bin, threads, handover):
    """In a Ray task with `threads` CPUs, as the stage's fit runs (the same process priority and CPU share on a
    shared machine): the matrices read (not timed), then plain fits (timed: wall, this process's CPU-seconds), then
    optionally the hand-over variant."""
    matrices = _plain_matrices(train_dir, features, state, classes, seed, fraction)
    t0, c0 = time.perf_counter(), time.process_time()
    seconds, models = _plain(matrices, params, rounds, max_bin, threads)
    out = {"seconds": seconds, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
           "mlogloss": {pop: float(model.eval(_dvalid(matrices[pop])).split(":")[1]) for pop, model in models.items()}}
    if handover:
        c0 = time.process_time()
        out["handover"] = _handover(matrices, params, rounds, max_bin, threads)
        out["handover_cpu"] = time.process_time() - c0
    return out


def _dvalid(matrix):
    import xgboost as xgb

    return xgb.DMatrix(matrix[2], label=matrix[3])


def stage_main(argv) -> None:
    args = _stage_args(argv)
    import ray

    from kon_ray.cluster.config import LocalCluster
    from kon_ray.segment.state import SegmentState
    from kon_ray.train import stage as train_stage
    from kon_ray.train.boost import xgb_params
    from kon_ray.train.config import ModelConfig
    from kon_ray.train.data import model_features
    from tests.train.synthetic import make_split_frame, synthetic_context, write_features_dir

    cpu_seconds = _CpuMeter()
    cluster = LocalCluster()
    threads = cluster.train_workers * cluster.cpus_per_train_worker
    model = ModelConfig(max_depth=args.max_depth, num_boost_round=args.rounds, early_stopping_rounds=0,
                        distributed_min_rows=10**12)
    state = SegmentState(estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=["kwh"],
                         mean=[50.0], std=[30.0], centroids=[[-1.0], [1.0]])
    scratch = tempfile.mkdtemp(prefix="kon-bench-train-")
    run_dir = os.path.join(scratch, "run")
    t0 = time.perf_counter()
    frame = make_split_frame(args.rows, features=args.features, seed=1, industrial_share=args.industrial_share)
    write_features_dir(run_dir, {"train": frame}, features=args.features, parts=args.parts)
    os.makedirs(os.path.join(run_dir, "segment"))
    Path(run_dir, "segment", "segment_state.json").write_text(state.to_json())
    del frame
    print(f"data: {args.rows:,} rows x {args.features} float32 features (+ estrato, cluster), 4 classes, "
          f"industrial share {args.industrial_share}, {args.parts} Parquet parts, written in "
          f"{time.perf_counter() - t0:.1f} s; {args.rounds} rounds, depth {args.max_depth}, early stopping off; "
          f"{threads} training CPUs", flush=True)

    ray.init(num_cpus=threads + cluster.data_cpu_reserve, object_store_memory=int(2 * 1024**3),
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    features = model_features([f"f_{i:03d}" for i in range(args.features)])
    train_dir = os.path.join(run_dir, "features", "train")

    for attempt in range(1, args.repeat + 1):
        # -- the stage --------------------------------------------------------------------------------------------
        ctx = synthetic_context(run_dir, os.path.join(scratch, f"staged-{attempt}"), model=model)
        t0, c0 = time.perf_counter(), cpu_seconds()
        metrics = train_stage.train_all(ctx)
        stage_s, stage_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        meta = {pop: json.loads(Path(scratch, f"staged-{attempt}", pop, "metadata.json").read_text())
                for pop in ("domestic", "industrial")}
        worker = {pop: m["worker_seconds"] for pop, m in meta.items()}
        rows = {pop: m["rows"]["train"] + m["rows"]["validation"] for pop, m in meta.items()}
        float32 = sum(rows.values()) * len(features) * 4
        inside = worker["domestic"]["ingest_s"] + sum(w["dmatrix_s"] + w["boost_s"] for w in worker.values())
        peak = max(m.get("peak_rss_bytes") or 0 for m in meta.values())
        print(f"[{attempt}] stage: {stage_s:.1f} s, {stage_cpu:.1f} CPU-s; rows domestic {rows['domestic']:,}, "
              f"industrial {rows['industrial']:,}; read both {worker['domestic']['ingest_s']:.1f} s, "
              + ", ".join(f"{pop} QuantileDMatrix {w['dmatrix_s']:.1f} s + boosting {w['boost_s']:.1f} s"
                          for pop, w in worker.items())
              + f"; the rest (class counts, Ray task, model folders) {stage_s - inside:.1f} s", flush=True)
        print(f"[{attempt}] training process peak RSS {peak / 2**30:.2f} GiB against the float32 matrix "
              f"{float32 / 2**30:.2f} GiB ({peak / float32:.2f}x)", flush=True)

        # -- plain, and handing threads over ----------------------------------------------------------------------
        from kon_ray import execution

        classes = {pop: m["class_labels"] for pop, m in meta.items()}
        params = {pop: xgb_params(model, len(classes[pop]), threads, ctx.config.seed) for pop in classes}
        plain = execution.run_remote(_plain_task, train_dir, features, state, classes, ctx.config.seed,
                                     model.validation_fraction, params, args.rounds, model.max_bin, threads,
                                     not args.skip_handover, num_cpus=threads)
        plain_s, plain_wall, plain_cpu = plain["seconds"], plain["wall"], plain["cpu"]
        print(f"[{attempt}] plain xgboost.train nthread={threads}: domestic {plain_s['domestic']:.1f} s + industrial "
              f"{plain_s['industrial']:.1f} s = {plain_wall:.1f} s, {plain_cpu:.1f} CPU-s", flush=True)
        print(f"[{attempt}] ratio stage / sum of plain fits: {stage_s / plain_wall:.3f} (goal <= 1.1); CPU-s "
              f"{stage_cpu / plain_cpu:.2f}", flush=True)
        for pop in ("domestic", "industrial"):
            curve = meta[pop]["training_curve"]["validation"]["mlogloss"]
            print(f"[{attempt}] {pop}: final validation mlogloss stage {curve[-1]:.5f}, plain "
                  f"{plain['mlogloss'][pop]:.5f}", flush=True)
        if "handover" in plain:
            print(f"[{attempt}] threads handed over (1 + 1, then {threads} for the survivor): {plain['handover']:.1f} "
                  f"s, {plain['handover_cpu']:.1f} CPU-s; ratio to the sum of plain fits "
                  f"{plain['handover'] / plain_wall:.3f}", flush=True)
        metrics.clear()
    ray.shutdown()


def main() -> None:
    if "--ray-train" in sys.argv[1:]:
        ray_train_main(sys.argv[1:])
        return
    stage_main(sys.argv[1:])


if __name__ == "__main__":
    main()
