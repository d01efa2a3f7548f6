"""Benchmark: the WHOLE InferenceReporting stage (kon_ray.infer.stage.run: scoring, predictions written, metric
counts, prediction drift, reports) against the plain baseline on the same files, in one run, for both layouts.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_infer.py                        # 1M scored rows x 240
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_infer.py --rows 200000 --layouts one
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_infer.py --rows 100000 --profile   # where the time goes
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_infer.py --rows 400000 --layouts many --estimation

Data: the preprocess layout, `--rows` records split half test (labelled: the prediction-drift reference) and half
current (labelled, as the pipeline's current window), 240 float32 features, one population model (50 rounds x 4
classes, trained on a sample, saved as the train stage does). Layouts:
  one   each split one Parquet file with one row group (pyarrow's default for a table this size)
  many  each split in files of --rows-per-file rows, 64k-row row groups

Plain baseline, per split: pyarrow read of the features and id, one float32 matrix, `Booster.inplace_predict`
(nthread = cores), write id / predicted / probabilities. kon_ray: `kon_ray.infer.stage.run` on a local Ray started as
the pipeline starts it (cluster=local); its Ray start is not timed. The stage runs twice: the first run pays for
worker processes importing xgboost and loading the model (as the stage does once per run), the second does not.

Reported: wall time and CPU-seconds of all processes (this process and every Ray process: raylet, GCS, workers;
psutil), the ratio kon_ray / plain per layout against the goal (<= 1.5x), and that both give the same probabilities.
`--profile` runs the stage's pass in this process without Ray (the same code path per unit) under cProfile and
prints where the time goes.

`--estimation`: instead of the plain baseline, the stage with the label-free performance estimate
(`performance.enabled`, kon_ray/infer/estimate.py: calibration on the test split, partials per month, estrato and
cluster on the current split) against the same stage without it, on warm workers (one untimed run first), each
timed `--repeats` times alternately; the best of each and their ratio (goal <= 1.2x). The current split's rows
carry a date over six months, so the estimate has six chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# the synthetic data builders live with the tests (tests/train/synthetic.py); run from the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL = 1.5
ESTIMATION_GOAL = 1.2
MONTHS = 6
ROW_GROUP = 65_536


def cpu_seconds() -> Dict[int, float]:
    """user + system CPU-seconds of this process and all its descendants (Ray's processes are), by pid."""
    import psutil

    me = psutil.Process()
    out = {}
    for proc in [me] + me.children(recursive=True):
        try:
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
        except psutil.Error:
            pass
    return out


def cpu_since(before: Dict[int, float]) -> float:
    after = cpu_seconds()
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def measure(fn) -> Tuple[float, float]:
    before, t = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t, cpu_since(before)


def write_split(folder: str, rows: int, features: int, seed: int, layout: str, rows_per_file: int, labels) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.train.synthetic import feature_names, learnable_matrix

    os.makedirs(folder)
    names = feature_names(features)
    step = rows if layout == "one" else rows_per_file
    for i, start in enumerate(range(0, rows, step)):
        n = min(step, rows - start)
        X, y = learnable_matrix(n, features, len(labels), seed=seed + start)
        table = pa.table({**{f: X[:, j] for j, f in enumerate(names)},
                          "customer_id": np.arange(seed * 10**8 + start, seed * 10**8 + start + n, dtype=np.int64),
                          "record_date": pa.array(np.datetime64("2026-01-15") + 31 * (
                              (start + np.arange(n)) % MONTHS).astype("timedelta64[D]")),
                          "segment": pa.array(np.asarray(labels, dtype=object)[y]),
                          "population": pa.array(["domestic"] * n)})
        pq.write_table(table, os.path.join(folder, f"part-{i:05d}.parquet"),
                       row_group_size=n if layout == "one" else ROW_GROUP)


def plain(source: str, target: str, booster, base: List[str], labels, cores: int) -> np.ndarray:
    """The baseline for one split: read, one float32 matrix, inplace_predict, write."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source, columns=base + ["customer_id"])
    matrix = np.empty((table.num_rows, len(base) + 2), dtype=np.float32)
    for j, f in enumerate(base):
        matrix[:, j] = table.column(f).to_numpy()
    matrix[:, -2:] = 0  # estrato, cluster: 0 here (no segmentation configured)
    booster.set_param({"nthread": cores})
    probs = booster.inplace_predict(matrix)
    out = {"customer_id": table.column("customer_id"), "predicted": pa.array(np.asarray(labels)[probs.argmax(1)])}
    out.update({f"prob_{c}": probs[:, k] for k, c in enumerate(labels)})
    pq.write_table(pa.table(out), target)
    return probs


def estimation(run_dir: str, repeats: int) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """The stage without and with the performance estimate, warm workers: (wall, CPU-s) of the best run of each."""
    from dataclasses import replace

    from kon_ray.infer import stage as infer_stage
    from kon_ray.performance.config import InferPerformanceConfig
    from tests.train.synthetic import synthetic_context

    base = synthetic_context(run_dir, os.path.join(run_dir, "reports"))
    contexts = {enabled: replace(base, config=replace(base.config, performance=InferPerformanceConfig(enabled)))
                for enabled in (False, True)}
    infer_stage.run(contexts[True])  # warm workers: xgboost imported, the model loaded
    times: Dict[bool, List[Tuple[float, float]]] = {False: [], True: []}
    for _ in range(repeats):
        for enabled in (False, True):
            times[enabled].append(measure(lambda enabled=enabled: infer_stage.run(contexts[enabled])))
            print(f"stage {'with' if enabled else 'without'} the estimate: {times[enabled][-1][0]:.2f} s wall,"
                  f" {times[enabled][-1][1]:.2f} CPU-s")
    with open(os.path.join(run_dir, "reports", "performance_report.json")) as handle:
        overall = json.load(handle)["populations"]["domestic"]["overall"]
    print(f"estimated accuracy {overall['estimated']['accuracy']:.4f}, realized {overall['realized']['accuracy']:.4f}"
          f" on {overall['rows']:,} current rows")
    return min(times[False]), min(times[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="scored rows, both splits together")
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--rows-per-file", type=int, default=250_000, help="layout 'many': rows per file")
    parser.add_argument("--layouts", default="one,many")
    parser.add_argument("--profile", action="store_true", help="cProfile the stage in this process, no Ray")
    parser.add_argument("--estimation", action="store_true", help="the stage with against without the estimate")
    parser.add_argument("--repeats", type=int, default=3, help="--estimation: timed runs of each")
    args = parser.parse_args()

    import pyarrow.parquet as pq
    import xgboost as xgb

    from kon_ray.cluster.config import LocalCluster
    from kon_ray.infer import stage as infer_stage
    from kon_ray.segment.config import SegmentConfig
    from kon_ray.segment.state import SegmentState
    from kon_ray.stages import StageResult
    from kon_ray.train.boost import xgb_params
    from kon_ray.train.config import ModelConfig
    from kon_ray.train.data import model_features
    from kon_ray.train.model_folder import write_model_folder as _write_model_folder
    from tests.train.synthetic import CLASS_LABELS, feature_names, learnable_matrix, synthetic_context

    labels = list(CLASS_LABELS)
    cores = os.cpu_count() or 1
    base = feature_names(args.features)
    features = model_features(base)
    root = tempfile.mkdtemp(prefix="bench_infer_")
    results = []
    compared: List[Tuple[str, Tuple[float, float], Tuple[float, float]]] = []  # --estimation: without, with
    try:
        # -- model: trained on a sample, saved as the train stage would ----------------------------------------
        X, y = learnable_matrix(50_000, args.features, len(labels), seed=99)
        X = np.hstack([X, np.zeros((len(X), 2), np.float32)])
        params = xgb_params(ModelConfig(), len(labels), nthread=cores, seed=0)
        booster = xgb.train(params, xgb.QuantileDMatrix(X, label=y), args.rounds)
        del X, y
        ckpt, seg_dir = os.path.join(root, "ckpt"), os.path.join(root, "segment")
        os.makedirs(ckpt)
        os.makedirs(seg_dir)
        booster.save_model(os.path.join(ckpt, "model.ubj"))
        with open(os.path.join(seg_dir, "segment_state.json"), "w") as out:
            out.write(SegmentState("", [], [], [], [], []).to_json())
        meta = {"population": "domestic", "features": features, "class_labels": labels,
                "class_counts": {c: 1000 + i for i, c in enumerate(labels)}, "best_iteration": args.rounds - 1,
                "rounds_trained": args.rounds}

        if not args.profile:
            from kon_ray.cluster.local import init_local_ray

            init_local_ray(LocalCluster())  # as a cluster=local run starts it; not timed
        import ray

        for layout in [s.strip() for s in args.layouts.split(",") if s.strip()]:
            run_dir = os.path.join(root, layout)
            split_rows = {"test": args.rows // 2, "current": args.rows - args.rows // 2}
            for seed, (split, n) in enumerate(split_rows.items(), start=1):
                write_split(os.path.join(run_dir, "features", split), n, args.features, seed, layout,
                            args.rows_per_file, labels)
            _write_model_folder(os.path.join(run_dir, "models", "domestic"), ckpt, features, meta, root, seg_dir)
            files = {s: sorted(os.listdir(os.path.join(run_dir, "features", s))) for s in split_rows}
            groups = sum(pq.ParquetFile(os.path.join(run_dir, "features", s, f)).metadata.num_row_groups
                         for s in files for f in files[s])
            print(f"\n== layout {layout}: {args.rows:,} rows x {args.features} features "
                  f"({sum(map(len, files.values()))} files, {groups} row groups); model {args.rounds} rounds x "
                  f"{len(labels)} classes; {cores} cores")

            if args.estimation:
                compared.append((layout, *estimation(run_dir, args.repeats)))
                shutil.rmtree(run_dir, ignore_errors=True)
                continue
            plain_probs: Dict[str, Any] = {}

            def run_plain(split_rows=split_rows, plain_probs=plain_probs, run_dir=run_dir):
                for split in split_rows:
                    plain_probs[split] = plain(os.path.join(run_dir, "features", split),
                                               os.path.join(run_dir, f"plain-{split}.parquet"), booster, base, labels,
                                               cores)

            plain_wall, plain_cpu = measure(run_plain)
            print(f"plain (pyarrow + inplace_predict nthread={cores} + write): {plain_wall:.2f} s wall, "
                  f"{plain_cpu:.2f} CPU-s")

            ctx = synthetic_context(run_dir, os.path.join(run_dir, "reports"), segment=SegmentConfig())
            if args.profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile(time.process_time)  # CPU time: robust on a shared machine
                t = time.perf_counter()
                profiler.runcall(infer_stage.run, ctx)
                print(f"kon_ray stage in this process, no Ray (units one after another), profile in CPU-s: "
                      f"{time.perf_counter() - t:.2f} s")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
                continue
            stage_metrics: Dict[str, Any] = {}

            def run_stage(stage_metrics=stage_metrics, ctx=ctx):
                stage_metrics.update(StageResult.of(infer_stage.run(ctx)).metrics)

            first = measure(run_stage)
            second = measure(run_stage)
            for name, (wall, cpu) in (("first run (cold workers)", first), ("second run", second)):
                print(f"kon_ray whole stage, {name}: {wall:.2f} s wall, {cpu:.2f} CPU-s -> "
                      f"{wall / plain_wall:.2f}x plain wall, {cpu / plain_cpu:.2f}x plain CPU "
                      f"(goal <= {GOAL}x wall)")
            per_m = 1e6 / args.rows
            print(f"per 1M scored rows: plain {plain_wall * per_m:.1f} s; kon_ray {first[0] * per_m:.1f} s / "
                  f"{second[0] * per_m:.1f} s; prediction drift psi_max "
                  f"{stage_metrics.get('domestic/prediction_drift_psi_max')}")
            for split in split_rows:
                kon = pq.read_table(os.path.join(run_dir, "reports", "predictions", split)).to_pandas()
                kon = kon.sort_values("customer_id")
                order = np.argsort(pq.read_table(os.path.join(run_dir, "plain-" + split + ".parquet"),
                                                 columns=["customer_id"]).column(0).to_numpy())
                np.testing.assert_allclose(kon[[f"prob_{c}" for c in labels]].to_numpy(),
                                           plain_probs[split][order], rtol=1e-5, atol=1e-6)
            print("probabilities: identical to plain (rtol 1e-5)")
            results.append((layout, plain_wall, plain_cpu, first, second))
            shutil.rmtree(run_dir, ignore_errors=True)
        if compared:
            print("\nlayout | without: wall / CPU-s | with: wall / CPU-s"
                  f" | ratio wall / CPU (goal <= {ESTIMATION_GOAL}x)")
            for layout, (w0, c0), (w1, c1) in compared:
                print(f"{layout} | {w0:.2f} / {c0:.2f} | {w1:.2f} / {c1:.2f} | {w1 / w0:.2f}x / {c1 / c0:.2f}x")
        elif results:
            print("\nlayout | plain wall / CPU-s | stage 1st wall / CPU-s | stage 2nd wall / CPU-s"
                  " | wall ratio 1st / 2nd | CPU ratio 1st / 2nd")
            for layout, pw, pc, (w1, c1), (w2, c2) in results:
                print(f"{layout} | {pw:.2f} / {pc:.2f} | {w1:.2f} / {c1:.2f} | {w2:.2f} / {c2:.2f} | "
                      f"{w1 / pw:.2f}x / {w2 / pw:.2f}x (goal <= {GOAL}x) | {c1 / pc:.2f}x / {c2 / pc:.2f}x")
        if ray.is_initialized():
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
