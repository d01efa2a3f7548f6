"""Benchmark the standalone drift command against a single-process numpy/scipy baseline and a plain read + one
histogram per column, on the same files, for two layouts, in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_drift.py [--rows 1000000] [--features 240]
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_drift.py --rows 200000 --profile   # where time goes
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_drift.py --rows 10000000 --data /big/disk/drift10m
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_drift.py --rows 200000 --segments --skip-limit
        (issue 30: the command with and without drift.segment_columns=[3 columns], the ratio in one run)
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_drift.py --rows 200000 --segments --derived --skip-limit
        (and the pipeline's way: estrato and cluster made per batch from a segment state, BENCH_STATE)

Generates a deterministic feature-like frame per side (numeric with ties, skew and missing values; categorical as
dictionary strings; `--rows` rows each, the current shifted) and writes it twice:
  one_group  one file, `pq.write_table` defaults (one row group up to 1Mi rows: how data usually arrives)
  rg64k      one file in 65,536-row row groups
Then, per layout, each of these runs as its own process, timed from outside (wall, CPU-seconds of the process
and every descendant, Ray's raylet, GCS and workers included, and peak RSS of the whole process tree):
  kon_ray    `python -m kon_ray.drift reference=... current=... output=...`: the whole command as a user runs it,
             Ray start, the reference fit, the current pass and the three reports included
  baseline   one process: pandas read, per feature numpy PSI (np.quantile + bin counts), scipy ks_2samp(asymp),
             chi2_contingency(correction=False)
  limit      one process: read the columns (pyarrow, its default threads) and count them into the reference PSI
             bins (one np.histogram per numeric column, one value count per categorical column), both sides
and prints the ratios against the goals (kon_ray >= 5x faster than the baseline, <= 1.5x the limit) and the
largest differences to the baseline's statistics. `--profile` instead times the drift passes in one process
(Ray started first) and prints cProfile's top functions of the driver.

CPU-seconds: this script makes itself a child subreaper, so Ray's processes, which outlive their parents, are
re-parented to it and stay in its process tree; every process of the tree is sampled every 0.1 s (its CPU time
when last seen, split by kind: driver, Ray daemons, Ray workers), and the larger of that sum and
getrusage(RUSAGE_CHILDREN) is reported (the latter misses processes whose parent ignores SIGCHLD).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PART_ROWS = 250_000
LAYOUTS = {"one_group": None, "rg64k": 65_536}  # row_group_size (None: pyarrow's default)


# --- data ----------------------------------------------------------------------------------------------------


SEGMENTS = ("seg_population", "seg_estrato", "seg_cluster")  # --segments: issue 30's three segment columns
# --derived: the pipeline's DriftCheck attributes by population, estrato and cluster, the last two made from each
# batch by the segment stage's saved state (kon_ray/drift/segments.py); this one has POLA's shape: estrato from one
# lognormal column, 4 clusters of 5 log-scaled features
BENCH_STATE = dict(estrato_column="num_001", estrato_thresholds=[0.3, 0.7, 1.5, 3.0, 6.0],
                   cluster_features=[f"num_{j:03d}" for j in (0, 1, 2, 3, 4)], mean=[0.0, 0.6, 1.6, 4.3, 0.4],
                   std=[0.6, 0.5, 0.4, 0.6, 0.2], log_scale=True,
                   centroids=np.random.default_rng(0).normal(0, 1, (4, 5)).round(3).tolist())
DERIVED = ("seg_population", "estrato", "cluster")


def generate_parts(rows: int, features: int, shift: float, seed: int, segments: bool = False):
    """Parts of PART_ROWS rows; feature j's distribution family is j % 5; `shift` moves a third of them. With
    `segments`, three segment columns as well (2, 7 and 8 values; their mix moves with `shift`)."""
    n_cat = features // 6
    vocab = pa.array([f"cat_{i:02d}" for i in range(40)])
    for part, start in enumerate(range(0, rows, PART_ROWS)):
        n = min(PART_ROWS, rows - start)
        rng = np.random.default_rng([seed, part])
        cols = {}
        for j in range(features - n_cat):
            s = shift if j % 3 == 0 else 0.0
            kind = j % 5
            if kind == 0:
                x = rng.normal(s, 1.0, n)
            elif kind == 1:
                x = rng.lognormal(0.0 + s, 1.0, n)
            elif kind == 2:
                x = rng.poisson(4 + 3 * s, n).astype(np.float64)  # discrete: many ties
            elif kind == 3:
                x = np.round(rng.gamma(2.0, 50.0 * (1 + s), n), 1)  # kWh-like, rounded
            else:
                x = rng.uniform(0, 1 + s, n)
            x[rng.random(n) < 0.02] = np.nan
            cols[f"num_{j:03d}"] = pa.array(x, from_pandas=True)
        for j in range(n_cat):
            k = 5 + (j % 8) * 4
            p = np.linspace(1, 2 + (shift * 3 if j % 3 == 0 else 0), k)
            idx = rng.choice(k, size=n, p=p / p.sum()).astype(np.int32)
            cols[f"cat_{j:03d}"] = pa.DictionaryArray.from_arrays(pa.array(idx), vocab[:k])
        if segments:
            industrial = rng.random(n) < 0.2 + shift
            cols["seg_population"] = pa.array(np.where(industrial, "industrial", "domestic"))
            cols["seg_estrato"] = pa.array(rng.integers(0, 7, n))
            cols["seg_cluster"] = pa.array(rng.integers(0, 8, n).astype(np.int16))
        yield pa.table(cols)


WRITE_ROWS = 1024**2  # pyarrow's default row group size: the rows written at once (a multiple of 64k)


def write_layouts(tmp: str, rows: int, features: int, segments: bool = False) -> dict:
    """{layout: (reference file, current file)}: the same rows written once per layout, WRITE_ROWS at a time (10M x
    240 per side does not fit in memory): one_group has pyarrow's default row groups (one up to 1Mi rows)."""
    paths: dict = {layout: [] for layout in LAYOUTS}
    for side, shift, seed in (("reference", 0.0, 1), ("current", 0.15, 2)):
        writers: dict = {}
        for layout in LAYOUTS:
            folder = os.path.join(tmp, layout, side)
            os.makedirs(folder)
            paths[layout].append(os.path.join(folder, "part-00000.parquet"))
        buffered: list = []

        def flush(tables: list, writers: dict = writers) -> None:
            table = pa.concat_tables(tables).combine_chunks()
            for layout, group_rows in LAYOUTS.items():
                if layout not in writers:
                    writers[layout] = pq.ParquetWriter(paths[layout][-1], table.schema)
                writers[layout].write_table(table, row_group_size=group_rows or WRITE_ROWS)

        for part in generate_parts(rows, features, shift, seed, segments):
            buffered.append(part)
            if sum(t.num_rows for t in buffered) >= WRITE_ROWS:
                whole = pa.concat_tables(buffered)
                flush([whole.slice(0, WRITE_ROWS)])
                buffered = [whole.slice(WRITE_ROWS)] if whole.num_rows > WRITE_ROWS else []
        if buffered:
            flush(buffered)
        for writer in writers.values():
            writer.close()
    return {layout: tuple(p) for layout, p in paths.items()}


def kept_layouts(folder: str, rows: int, features: int) -> dict:
    """`write_layouts` into `folder`, or the files already there when they have `rows` rows and `features` columns."""
    paths = {layout: tuple(os.path.join(folder, layout, side, "part-00000.parquet")
                           for side in ("reference", "current")) for layout in LAYOUTS}
    try:
        if all(pq.ParquetFile(p).metadata.num_rows == rows and pq.ParquetFile(p).metadata.num_columns == features
               for pair in paths.values() for p in pair):
            return paths
    except OSError:
        pass
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return write_layouts(folder, rows, features)


# --- the single-process sides (run as `--task NAME` in a process of their own) ------------------------------


def run_baseline(ref: str, cur: str, out: str, bins: int = 10, eps: float = 1e-4) -> None:
    r = pq.read_table(ref).to_pandas()
    c = pq.read_table(cur).to_pandas()
    res = {}
    for name in r.columns:
        if isinstance(r[name].dtype, pd.CategoricalDtype) or r[name].dtype == object:
            res[name] = _categorical_stats(r[name], c[name], eps)
        else:
            res[name] = _numeric_stats(r[name].to_numpy(np.float64), c[name].to_numpy(np.float64), bins, eps)
    with open(out, "w") as handle:
        json.dump(res, handle)


def run_streaming_baseline(ref: str, cur: str, out: str, bins: int = 10, eps: float = 1e-4) -> None:
    """The baseline for data that does not fit in memory (10M x 240 per side is 19 GB as float64): the same
    statistics as `run_baseline` (np.quantile PSI, scipy ks_2samp(asymp), chi2_contingency), one column at a time,
    each column read from both files (all its row groups, one after another) and dropped before the next: at most
    two columns in memory."""
    ref_file, cur_file = pq.ParquetFile(ref), pq.ParquetFile(cur)
    res = {}
    for name in ref_file.schema_arrow.names:
        r = ref_file.read(columns=[name]).column(0)
        c = cur_file.read(columns=[name]).column(0)
        if pa.types.is_dictionary(r.type) or pa.types.is_string(r.type):
            res[name] = _categorical_stats(r.to_pandas(), c.to_pandas(), eps)
        else:
            res[name] = _numeric_stats(r.to_numpy(zero_copy_only=False).astype(np.float64),
                                       c.to_numpy(zero_copy_only=False).astype(np.float64), bins, eps)
        del r, c
    with open(out, "w") as handle:
        json.dump(res, handle)


def _categorical_stats(r: pd.Series, c: pd.Series, eps: float) -> tuple:
    """(PSI, chi2, p) of one categorical column with pandas and scipy: what a user would write."""
    rc, cc = r.value_counts(dropna=False), c.value_counts(dropna=False)
    keys = rc.index.union(cc.index)
    table = np.array([rc.reindex(keys, fill_value=0).to_numpy(), cc.reindex(keys, fill_value=0).to_numpy()])
    table = table[:, table.sum(axis=0) > 0]
    test = stats.chi2_contingency(table, correction=False)
    pr, pc = table[0] / len(r), table[1] / len(c)
    return _psi(pr, pc, eps), float(test.statistic), float(test.pvalue)


def _numeric_stats(x: np.ndarray, y: np.ndarray, bins: int, eps: float) -> tuple:
    """(PSI on the reference's quantile bins plus a missing bin, KS, p) of one numeric column with numpy and scipy."""
    xv, yv = x[~np.isnan(x)], y[~np.isnan(y)]
    edges = np.unique(np.quantile(xv, np.arange(1, bins) / bins))
    pr = np.append(np.bincount(np.searchsorted(edges, xv), minlength=len(edges) + 1), len(x) - len(xv)) / len(x)
    pc = np.append(np.bincount(np.searchsorted(edges, yv), minlength=len(edges) + 1), len(y) - len(yv)) / len(y)
    test = stats.ks_2samp(xv, yv, method="asymp")
    return _psi(pr, pc, eps), float(test.statistic), float(test.pvalue)


def _psi(pr, pc, eps):
    pr, pc = np.where(pr == 0, eps, pr), np.where(pc == 0, eps, pc)
    return float(np.sum((pc - pr) * np.log(pc / pr)))


def run_limit(ref: str, cur: str, edges_json: str) -> None:
    """Read the columns and count them into the reference PSI bins: np.histogram / value counts, one process."""
    with open(edges_json) as handle:
        edges = {k: np.asarray(v, dtype=np.float64) for k, v in json.load(handle).items()}
    for path in (ref, cur):
        table = pq.read_table(path)
        for name in table.column_names:
            col = table.column(name)
            if name in edges:
                x = col.to_numpy()
                np.histogram(x[~np.isnan(x)], bins=np.concatenate(([-np.inf], edges[name], [np.inf])))
            else:
                col.value_counts()


# --- measuring a process tree --------------------------------------------------------------------------------


def _become_subreaper() -> None:
    """Orphaned descendants (Ray's daemons and workers) are re-parented to this process, so their CPU time is
    counted in RUSAGE_CHILDREN once reaped here."""
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd: list, env: dict, linger_s: float = 60.0) -> dict:
    """Run `cmd`; wall time to its exit, CPU-seconds of it and every descendant, peak RSS of the whole tree."""
    cpu_before = _children_cpu()
    peak, stop = [0], threading.Event()
    seen: dict = {}  # pid -> (kind, CPU-seconds when last seen): the split by process kind (approximate)

    def sample() -> None:
        me = psutil.Process()
        while not stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                    times = p.cpu_times()
                    if p.pid not in seen:
                        seen[p.pid] = (_kind(p), 0.0)
                    seen[p.pid] = (seen[p.pid][0], times.user + times.system)
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.communicate()[0]
    wall = time.perf_counter() - start
    # Ray's processes exit shortly after the driver; wait for them (and reap them) so their CPU is counted
    deadline = time.monotonic() + linger_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                for p in psutil.Process().children(recursive=True):
                    p.kill()
                deadline = time.monotonic() + 10
            time.sleep(0.05)
    stop.set()
    sampler.join()
    if proc.returncode not in (0,):
        print(output[-3000:])
        raise SystemExit(f"{cmd[:4]} failed with exit code {proc.returncode}")
    split: dict = {}
    for kind, cpu in seen.values():
        split[kind] = split.get(kind, 0.0) + cpu
    # getrusage misses children that a parent reaps with SIGCHLD ignored (Ray's daemons do); the samples miss the
    # last 0.1 s of each process: the larger of the two is the closer
    cpu = max(_children_cpu() - cpu_before, sum(split.values()))
    return {"wall": wall, "cpu": cpu, "peak": peak[0], "output": output, "split": split}


def _kind(p: psutil.Process) -> str:
    """driver | ray workers | ray daemons (gcs, raylet, ...): what a process of the run is."""
    name = p.name()
    if name.startswith("ray::") or "default_worker.py" in " ".join(p.cmdline()[:3]):
        return "ray workers"
    if p.ppid() == os.getpid():
        return "driver"
    return "ray daemons"


# --- the run -------------------------------------------------------------------------------------------------


def _line(name: str, m: dict, extra: str = "") -> str:
    line = (f"  {name:9s} wall {m['wall']:7.1f} s   CPU {m['cpu']:7.1f} s (all processes)"
            f"   peak RSS {m['peak'] / 2**30:5.2f} GiB{extra}")
    if len(m["split"]) > 1:
        line += "\n            CPU by process (sampled): " + ", ".join(
            f"{kind} {cpu:.1f} s" for kind, cpu in sorted(m["split"].items()))
    return line


def bench_layout(layout: str, ref: str, cur: str, tmp: str, args) -> dict:
    # PYTHONPATH: this checkout's kon_ray for `--task check` (a script's own folder, not the repository, is on its path)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", HYDRA_FULL_ERROR="0", PYTHONPATH=REPO)
    env.pop("RAY_ADDRESS", None)
    py = sys.executable
    out = os.path.join(tmp, f"out_{layout}")
    cmd = [py, "-m", "kon_ray.drift", f"reference={ref}", f"current={cur}", f"output={out}",
           f"hydra.run.dir={os.path.join(tmp, 'hydra_' + layout)}", *args.override]
    results: Dict[str, Any] = {"kon_ray": measure(cmd, env)}
    if args.segments:  # the same command with the three segment columns, right after: the ratio of one run
        with_segments = [*cmd[:5], f"output={out}_segments", *cmd[6:],
                         f"drift.segment_columns=[{','.join(SEGMENTS)}]"]
        results["segments"] = measure(with_segments, env)
        if args.derived:  # run_check as the drift stage calls it, without and with the derived segments
            for mode in ("none", "derived"):
                results[f"check_{mode}"] = measure([py, __file__, "--task", "check", ref, cur, f"{out}_{mode}",
                                                    mode], env)
        if args.skip_limit:
            return results
    with open(os.path.join(out, "reference_summary.json")) as handle:
        summary = json.load(handle)
    edges_json = os.path.join(tmp, f"edges_{layout}.json")
    with open(edges_json, "w") as handle:
        json.dump({k: v["psi_edges"] for k, v in summary["numeric"].items()}, handle)
    del summary
    results["limit"] = measure([py, __file__, "--task", "limit", ref, cur, edges_json], env)
    if not args.skip_baseline:
        base_json = os.path.join(tmp, f"baseline_{layout}.json")
        task = "streaming" if args.baseline == "streaming" or (args.baseline == "auto" and args.rows > 2_000_000) \
            else "baseline"
        results["baseline"] = measure([py, __file__, "--task", task, ref, cur, base_json], env)
        results["baseline_kind"] = task
        with open(base_json) as handle:
            results["base_stats"] = json.load(handle)
    with open(os.path.join(out, "drift_report.json")) as handle:
        results["ours"] = {f["name"]: f for f in json.load(handle)["features"]}
    return results


def report(layout: str, r: dict) -> None:
    ours, limit = r["kon_ray"], r.get("limit")
    print(f"{layout}:")
    print(_line("kon_ray", ours))
    if "segments" in r:
        seg = r["segments"]
        print(_line("segments", seg, f"   with / without {len(SEGMENTS)} segment columns = wall"
                                     f" {seg['wall'] / ours['wall']:.2f}x, CPU {seg['cpu'] / ours['cpu']:.2f}x"
                                     " (goal <= 1.3x)"))
    if "check_derived" in r:
        none, derived = r["check_none"], r["check_derived"]
        print(_line("check", none, "   run_check in one process, no segment columns"))
        ratio = f"wall {derived['wall'] / none['wall']:.2f}x, CPU {derived['cpu'] / none['cpu']:.2f}x"
        print(_line("derived", derived, f"   population + estrato + cluster made per batch: {ratio} (goal <= 1.3x)"))
    if limit is None:
        return
    print(_line("limit", limit, f"   kon_ray / limit = {ours['wall'] / limit['wall']:.2f}x (goal <= 1.5x)"))
    if "baseline" in r:
        base = r["baseline"]
        print(_line("baseline", base, f"   baseline / kon_ray = {base['wall'] / ours['wall']:.2f}x (goal >= 5x;"
                                      f" {r['baseline_kind']})"))
        b, o = r["base_stats"], r["ours"]
        dpsi = max(abs(o[k]["psi"] - b[k][0]) for k in b)
        dstat = max(abs((o[k]["statistic"] or 0) - b[k][1]) for k in b)
        inside = all(o[k]["statistic"] - 1e-12 <= b[k][1] <= o[k]["ks_upper"] + 1e-12
                     for k in b if o[k]["type"] == "numeric" and o[k]["statistic"] is not None)
        bound = max((o[k]["ks_upper"] or 0) - (o[k]["statistic"] or 0) for k in b if o[k]["type"] == "numeric")
        print(f"  max |PSI - baseline| = {dpsi:.2e}; max |statistic - baseline| = {dstat:.2e}; scipy's KS D inside"
              f" [statistic, ks_upper] for every numeric feature: {inside} (widest bound {bound:.2e})")


def run_derived_check(ref: str, cur: str, out: str, mode: str) -> None:
    """`run_check` as the pipeline's drift stage runs it (a local Ray, then the check): `mode` none, or derived
    (segment_columns DERIVED, estrato and cluster made per batch by BENCH_STATE's rules)."""
    from kon_ray.cluster.config import LocalCluster
    from kon_ray.cluster.local import init_local_ray
    from kon_ray.drift.check import run_check
    from kon_ray.drift.config import DriftConfig
    from kon_ray.drift.segments import SegmentRules
    from kon_ray.segment.state import SegmentState

    init_local_ray(LocalCluster())
    cfg = DriftConfig(segment_columns=list(DERIVED) if mode == "derived" else [])
    derive = SegmentRules.of(SegmentState(**BENCH_STATE), DERIVED) if mode == "derived" else None
    run_check(cfg, cur, out, reference=ref, derive=derive)


def profile(args) -> None:
    """The drift passes in this process, timed one by one, and the driver's cProfile."""
    import cProfile
    import pstats

    from kon_ray.cluster.config import LocalCluster
    from kon_ray.cluster.local import init_local_ray
    from kon_ray.drift import engine
    from kon_ray.drift.check import run_check
    from kon_ray.drift.config import DriftConfig

    tmp = tempfile.mkdtemp(prefix="bench_drift_")
    try:
        paths = write_layouts(tmp, args.rows, args.features)
        t = time.perf_counter()
        init_local_ray(LocalCluster(data_cpu_reserve=1, object_store_gb=4.0))
        print(f"ray start: {time.perf_counter() - t:.1f} s")
        for name in ("sample", "reduce", "fit_and_summarise", "summarise_current"):
            original = getattr(engine, name)

            def timed(*a, _original=original, _name=name, **k):
                t0 = time.perf_counter()
                out = _original(*a, **k)
                print(f"    {_name:18s} {time.perf_counter() - t0:6.2f} s")
                return out

            setattr(engine, name, timed)
        import kon_ray.drift.check as check

        check.fit_and_summarise, check.summarise_current = engine.fit_and_summarise, engine.summarise_current
        for layout, (ref, cur) in paths.items():
            print(f"{layout}:")
            prof = cProfile.Profile()
            t = time.perf_counter()
            prof.enable()
            run_check(DriftConfig(), cur, os.path.join(tmp, "out_" + layout), reference=ref)
            prof.disable()
            print(f"  run_check: {time.perf_counter() - t:.2f} s; driver's top functions (cumulative):")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of reference and current")
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated: " + ", ".join(LAYOUTS))
    parser.add_argument("--skip-baseline", action="store_true", help="time only kon_ray and the limit")
    parser.add_argument("--baseline", choices=("auto", "memory", "streaming"), default="auto",
                        help="memory: the whole frame in pandas; streaming: one column of both sides at a time"
                             " (auto: streaming above 2M rows, where the in-memory one does not fit)")
    parser.add_argument("--data", help="keep the generated files here and reuse them on the next run (same --rows"
                                       " and --features); default: a temporary folder, deleted at the end")
    parser.add_argument("--profile", action="store_true", help="time the passes in-process instead")
    parser.add_argument("--segments", action="store_true",
                        help="add three segment columns to the data and time the command with"
                             " drift.segment_columns=[...] right after the one without (issue 30's overhead)")
    parser.add_argument("--skip-limit", action="store_true", help="with --segments: time only the two commands")
    parser.add_argument("--derived", action="store_true",
                        help="with --segments: also time run_check without and with population, estrato and cluster"
                             " made per batch by a segment state (the pipeline's DriftCheck)")
    parser.add_argument("--override", action="append", default=[], help="extra key=value for the drift command")
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task == "baseline":
        return run_baseline(*args.paths)
    if args.task == "streaming":
        return run_streaming_baseline(*args.paths)
    if args.task == "limit":
        return run_limit(*args.paths)
    if args.task == "check":
        return run_derived_check(*args.paths)
    if args.profile:
        return profile(args)

    _become_subreaper()
    load = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="bench_drift_")
    try:
        t = time.perf_counter()
        paths = kept_layouts(args.data, args.rows, args.features) if args.data else write_layouts(
            tmp, args.rows, args.features, args.segments)
        size = sum(os.path.getsize(p) for pair in paths.values() for p in pair) / len(paths)
        print(f"data: {args.rows:,} rows x {args.features} features per side, {size / 2**20:.0f} MiB Parquet per"
              f" layout, generated in {time.perf_counter() - t:.1f} s; {os.cpu_count()} cores, load average"
              f" {load[0]:.1f} at start")
        for layout in args.layouts.split(","):
            ref, cur = paths[layout]
            groups = pq.ParquetFile(ref).metadata.num_row_groups
            r = bench_layout(layout, ref, cur, tmp, args)
            report(f"{layout} ({groups} row group{'s' if groups > 1 else ''} per file)", r)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
