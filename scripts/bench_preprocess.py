"""Benchmark PreprocessSplit: the Ray stage against the same transform functions in one plain pandas process, on
the same files, for both Parquet layouts, with wall time and CPU-seconds of every process.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_preprocess.py                  # POLA, 1M rows
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_preprocess.py --rows 200000    # quick
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_preprocess.py --layouts one-row-group --profile

The generated data is written in two layouts: `one-row-group` (one file, one row group: pyarrow's default for up
to 1M rows, the most common way data arrives) and `row-groups-64k` (a folder of 250k-row files in 64k-row row
groups). For each layout both sides read the same files and do the same work: plan the splits (id/date/target on
the driver), fit the state on the train portion, transform every kept row, write train/test/current Parquet. The
baseline streams file by file in one process (pyarrow still uses its own threads to read and write); the Ray side
is `kon_ray.features.stage.run` on a fresh local Ray sized like `cluster=local` (all cores + 1 reserve CPU),
started (and ingest run) before the clock starts; its workers start cold, as in a pipeline run.

CPU-seconds: user + system time of this process and every descendant (the Ray it starts: GCS, raylet, workers),
sampled every 0.2 s per process so that a process which ends inside the window still counts; other users'
processes on a shared machine are not counted. Peak memory is the summed RSS of the same processes.
Goals (issue 13): Ray at least 1.6x faster than pandas, and at most 1.25x its CPU-seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Tuple

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    # With no .pyc in the venv and none written, every Ray worker (and Ray's dashboard agent) compiles pandas,
    # pyarrow and ray from source at start: seconds of CPU each, which would be timed as the stage's. A private
    # bytecode cache, inherited by the Ray this script starts, leaves the venv untouched.
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(os.environ.get("TMPDIR", "/tmp"), "kon_pycache"))
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from kon_ray import storage  # noqa: E402
from kon_ray.config import CONF_DIR, load_config, register_configs, to_plain  # noqa: E402
from kon_ray.context import RunContext  # noqa: E402
from kon_ray.features import split as splits  # noqa: E402
from kon_ray.features.derive import parse_dates  # noqa: E402
from kon_ray.features.spec import POPULATION, build_spec  # noqa: E402
from kon_ray.features.state import finalize, merge, partial, sample_threshold  # noqa: E402
from kon_ray.features.transform import feature_arrays, population_of  # noqa: E402


class TreePeak:
    """Peak summed RSS and CPU-seconds of this process and its descendants while the block runs."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.bytes, self._stop = interval, 0, threading.Event()
        self._start: Dict[Tuple[int, float], float] = {}  # (pid, create time) -> CPU-s
        self._last: Dict[Tuple[int, float], float] = {}
        self._names: Dict[Any, str] = {}

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    self._last[key] = times.user + times.system
                    if key not in self._names:
                        self._names[key] = " ".join(proc.cmdline()[:3])[-60:] or proc.name()
            except psutil.Error:
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> "TreePeak":
        self.bytes = self._sample()
        self._start = dict(self._last)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, self._sample())

    @property
    def gib(self) -> float:
        return self.bytes / 1024**3

    @property
    def cpu_seconds(self) -> float:
        """CPU used inside the block by every process seen (a process started inside it counts from zero)."""
        return sum(cpu - self._start.get(key, 0.0) for key, cpu in self._last.items())

    def by_process(self, top: int = 8) -> str:
        """The processes that used the most CPU inside the block: `seconds name` per line."""
        used = sorted(((cpu - self._start.get(key, 0.0), key) for key, cpu in self._last.items()), reverse=True)
        return "\n".join(
            f"    {cpu:6.2f} CPU-s  pid {key[0]:>7}  {self._names.get(key, '?')}" for cpu, key in used[:top]
        )


def dataset_config(name: str, data: Path, overrides: list[str]):
    """The composed config for `name` (its YAML declares the columns and features: conf/dataset/<name>.yaml)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[f"+dataset={name}", "tracking=off", *overrides])
    with open_dict(cfg):
        cfg.dataset.path = str(data)
        cfg.output_dir = str(data.parent / "bench_run")  # replaced per run; Hydra is not running here
    return cfg


def ensure_data(cfg, rows: int, data: Path) -> None:
    if data.exists() and sum(pq.ParquetFile(f).metadata.num_rows for f in data.glob("*.parquet")) == rows:
        print(f"data: reusing {data} ({rows:,} rows)")
        return
    from kon_ray.synth.config import SynthConfig
    from kon_ray.synth.writer import generate

    shutil.rmtree(data, ignore_errors=True)
    start = time.perf_counter()
    config = load_config(cfg)
    generate(config.dataset, SynthConfig(rows=rows, rows_per_file=250_000), str(data))
    print(f"data: generated {rows:,} rows in {time.perf_counter() - start:.1f} s -> {data}")


def run_ray(cfg, run_dir: Path) -> Dict[str, Any]:
    """A fresh local Ray and ingest (untimed: Ray's start is the run's, ingest is another stage), then the timed
    preprocess stage; Ray is shut down afterwards so that the next layout starts cold too."""
    import ray

    from kon_ray import ingest
    from kon_ray.cluster.config import LocalCluster, of_kind
    from kon_ray.cluster.local import init_local_ray
    from kon_ray.features import stage

    config = load_config(cfg)
    began = time.perf_counter()
    init_local_ray(of_kind(config.cluster, LocalCluster))
    ray_start = time.perf_counter() - began
    try:
        ctx = RunContext(config=config, plain=to_plain(cfg), run_dir=str(run_dir))
        staged = storage.staging_dir(ctx.stage_dir("ingest"))
        ingest.run(RunContext(config=config, plain=ctx.plain, run_dir=ctx.run_dir, output_dir=staged))
        storage.publish(staged, ctx.stage_dir("ingest"))
        out = storage.join(str(run_dir), "features")
        with TreePeak() as peak:
            start = time.perf_counter()
            metrics = stage.run(RunContext(config=config, plain=ctx.plain, run_dir=ctx.run_dir, output_dir=out))
            seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    state = json.loads((Path(out) / "feature_state.json").read_text())
    return {"seconds": seconds, "cpu": peak.cpu_seconds, "peak_gib": peak.gib, "metrics": metrics,
            "ray_start": ray_start, "state": state, "processes": peak.by_process()}


def run_pandas(cfg, files: list[str], out: Path) -> Dict[str, Any]:
    """The same plan -> fit -> transform -> write with the same functions, in this one process."""
    from kon_ray.features.stage import read_keys, write_options

    config = load_config(cfg)
    spec = build_spec(config.dataset)
    split_cfg = config.split
    with TreePeak() as peak:
        start = time.perf_counter()
        ids, month_idx, targets = read_keys(files, spec)
        plan = splits.make_plan(
            ids, month_idx, targets, seed=config.seed, current_months=split_cfg.current_months,
            reference_months=split_cfg.reference_months, test_fraction=split_cfg.test_fraction,
            train_per_class=split_cfg.train_per_class, test_per_class=split_cfg.test_per_class,
        )
        train_rows = int((splits.assign(ids, month_idx, targets, plan, sample=False) == splits.TRAIN).sum())
        del ids, month_idx, targets
        threshold = sample_threshold(train_rows, spec.fit_sample_rows)
        partials = []
        for file in files:
            frame = pq.read_table(file, columns=spec.raw_columns).to_pandas()
            for lo in range(0, len(frame), spec.batch_rows):
                partials.append(partial(frame.iloc[lo : lo + spec.batch_rows], spec, plan, threshold))
        state = finalize(merge(partials, spec), spec, threshold)
        writers: Dict[str, pq.ParquetWriter] = {}
        rows = 0
        for file in files:
            table = pq.read_table(file, columns=spec.raw_columns)
            for lo in range(0, table.num_rows, spec.batch_rows):
                chunk = table.slice(lo, spec.batch_rows)
                keys = chunk.select([spec.id_column, spec.date_column, spec.target_column]).to_pandas()
                split = splits.assign(keys[spec.id_column], splits.month_index(parse_dates(keys[spec.date_column])),
                                      keys[spec.target_column], plan)
                keep = split != splits.EXCLUDED
                chunk = chunk.filter(pa.array(keep))
                frame = chunk.to_pandas()
                columns = {c: chunk.column(c) for c in spec.passthrough}
                columns[POPULATION] = pa.array(population_of(frame[spec.population_column], spec.industrial_values),
                                               pa.string())
                columns.update({k: pa.array(v) for k, v in feature_arrays(frame, state, spec).items()})
                result = pa.table(columns)
                kept = split[keep]
                for code, name in splits.SPLITS.items():
                    part = result.filter(pa.array(kept == code))
                    if part.num_rows == 0:
                        continue
                    if name not in writers:
                        (out / name).mkdir(parents=True, exist_ok=True)
                        # the stage's writer options (dictionary only for non-numeric columns), so both write alike
                        writers[name] = pq.ParquetWriter(str(out / name / "part-0.parquet"), part.schema,
                                                         **write_options(part.schema))
                    writers[name].write_table(part)
                    rows += part.num_rows
        for writer in writers.values():
            writer.close()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": peak.cpu_seconds, "peak_gib": peak.gib, "rows": rows, "state": state}


LAYOUTS = ("one-row-group", "row-groups-64k")


def write_layouts(source: Path, rows: int, layouts: list[str]) -> Dict[str, Path]:
    """The generated rows rewritten in each layout (reused when already there with the same row count)."""
    out = {}
    table = None
    for layout in layouts:
        folder = source.parent / f"{source.name}-{layout}"
        out[layout] = folder
        if folder.exists() and sum(pq.ParquetFile(f).metadata.num_rows for f in folder.glob("*.parquet")) == rows:
            continue
        if table is None:
            table = pa.concat_tables(pq.read_table(f) for f in sorted(source.glob("*.parquet")))
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        if layout == "one-row-group":
            pq.write_table(table, folder / "part-00000.parquet", compression="zstd", row_group_size=max(1, rows))
        else:
            for i, lo in enumerate(range(0, rows, 250_000)):
                pq.write_table(table.slice(lo, 250_000), folder / f"part-{i:05d}.parquet", compression="zstd",
                               row_group_size=65_536)
    for layout, folder in out.items():
        meta = [pq.ParquetFile(f).metadata for f in sorted(folder.glob("*.parquet"))]
        print(f"layout {layout}: {len(meta)} file(s), {sum(m.num_row_groups for m in meta)} row group(s)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="POLA")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", default=None, help="Parquet folder to use/generate (default data/bench/<DS>-<rows>)")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the pandas baseline (the same functions)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. split.train_per_class=500")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kon_ray").setLevel(logging.INFO)

    data = Path(args.data or REPO / "data" / "bench" / f"{args.dataset}-{args.rows}")
    cfg = dataset_config(args.dataset, data, args.overrides)
    ensure_data(cfg, args.rows, data)
    spec = build_spec(load_config(cfg).dataset)
    print(f"{args.dataset}: {len(spec.features)} features; {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 1024**3:.0f} GiB; load average {os.getloadavg()[0]:.1f}")
    folders = write_layouts(data, args.rows, args.layouts)
    work = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    results = []
    try:
        for layout, folder in folders.items():
            files = [str(f) for f in sorted(folder.glob("*.parquet"))]
            layout_cfg = dataset_config(args.dataset, folder, args.overrides)
            baseline = ray_result = None
            if not args.skip_baseline:
                profiler = cProfile.Profile() if args.profile else None
                if profiler:
                    profiler.enable()
                baseline = run_pandas(layout_cfg, files, work / layout / "pandas")
                if profiler:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
                print(f"[{layout}] pandas, 1 process: {baseline['seconds']:6.1f} s  {baseline['cpu']:6.1f} CPU-s"
                      f"  peak {baseline['peak_gib']:.2f} GiB  ({baseline['rows']:,} rows written)")
            if not args.skip_ray:
                ray_result = run_ray(layout_cfg, work / layout / "run")
                print(f"[{layout}] ray stage        : {ray_result['seconds']:6.1f} s  {ray_result['cpu']:6.1f} CPU-s"
                      f"  peak {ray_result['peak_gib']:.2f} GiB  (Ray start {ray_result['ray_start']:.1f} s, untimed;"
                      f" {ray_result['metrics']})")
                print(f"[{layout}] CPU-seconds by process (Ray side):\n{ray_result['processes']}")
            if baseline and ray_result:
                speedup = baseline["seconds"] / ray_result["seconds"]
                cpu_ratio = ray_result["cpu"] / baseline["cpu"]
                same = json.dumps(baseline["state"], sort_keys=True) == json.dumps(ray_result["state"], sort_keys=True)
                print(f"[{layout}] speedup {speedup:.2f}x (goal >= 1.6x: {'met' if speedup >= 1.6 else 'NOT met'});"
                      f" CPU-seconds ray/pandas {cpu_ratio:.2f}x (goal <= 1.25x:"
                      f" {'met' if cpu_ratio <= 1.25 else 'NOT met'}); feature_state identical: {same}")
                results.append((layout, baseline, ray_result, speedup, cpu_ratio))
            shutil.rmtree(work / layout, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if results:
        print("\n| layout | pandas wall | pandas CPU-s | Ray wall | Ray CPU-s | speedup | CPU ratio |"
              f"  ({args.rows:,} rows)")
        for layout, base, ray_r, speedup, cpu_ratio in results:
            print(f"| {layout} | {base['seconds']:.1f} s | {base['cpu']:.1f} | {ray_r['seconds']:.1f} s |"
                  f" {ray_r['cpu']:.1f} | {speedup:.2f}x | {cpu_ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
