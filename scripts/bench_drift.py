"""Benchmark DriftCheck against a single-process scipy/numpy baseline and the practical limit, in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_drift.py [--rows 1000000] [--features 240]

Generates a deterministic feature-like frame (numeric with ties, skew and missing values; categorical as
dictionary strings), written once to Parquet in a temp dir (reference and current, `--rows` rows each), then times:
  kon_ray    fit the reference and check the current on Ray (all statistics, exact PSI edges, bounded KS)
  baseline   one process: pandas read, per feature numpy PSI (np.quantile + bin counts), scipy ks_2samp(asymp),
             chi2_contingency(correction=False)
  limit      one process: read the same columns and count them into the reference PSI bins (one np.histogram
             per numeric column, one value count per categorical column) - the least any exact method must do
and prints wall times, ratios, the largest statistic differences to the baseline and peak RSS of all processes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
PART_ROWS = 250_000


class PeakRss:
    """Peak resident memory of this process and all its descendants (Ray's workers included)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list:
        me = psutil.Process()
        procs = {p.pid: p for p in [me, *me.children(recursive=True)]}
        session = _ray_session_dir()
        if session:  # a Ray joined via RAY_ADDRESS: its raylet and workers are not our children
            for p in psutil.process_iter(["cmdline"]):
                if any(session in arg for arg in (p.info["cmdline"] or [])):
                    procs[p.pid] = p
                    procs.update({c.pid: c for c in p.children(recursive=True)})
        return list(procs.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in self._processes():
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _ray_session_dir() -> str:
    try:
        import ray

        node = ray._private.worker._global_node
        return os.path.basename(node.get_session_dir_path()) if node is not None else ""
    except Exception:
        return ""


def generate(folder: str, rows: int, features: int, shift: float, seed: int) -> list[str]:
    """Parts of PART_ROWS rows; feature j's distribution family is j % 6; `shift` moves a third of them."""
    os.makedirs(folder)
    n_cat = features // 6
    vocab = pa.array([f"cat_{i:02d}" for i in range(40)])
    names = []
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
        name = os.path.join(folder, f"part-{part:05d}.parquet")
        pq.write_table(pa.table(cols), name, row_group_size=PART_ROWS // 2)
        names.append(name)
    return names


def run_kon_ray(ref: str, cur: str):
    from kon_ray.drift.compare import compare
    from kon_ray.drift.config import DriftConfig
    from kon_ray.drift.engine import fit_reference, summarise_current

    cfg = DriftConfig()
    summary = fit_reference(ref, cfg)
    features = compare(summary, summarise_current(summary, cur, cfg), cfg)
    return summary, {f["name"]: f for f in features}


def run_baseline(ref: str, cur: str, bins: int = 10, eps: float = 1e-4):
    r = pq.read_table(ref).to_pandas()
    c = pq.read_table(cur).to_pandas()
    out = {}
    for name in r.columns:
        if isinstance(r[name].dtype, pd.CategoricalDtype) or r[name].dtype == object:
            rc, cc = r[name].value_counts(dropna=False), c[name].value_counts(dropna=False)
            keys = rc.index.union(cc.index)
            table = np.array([rc.reindex(keys, fill_value=0).to_numpy(), cc.reindex(keys, fill_value=0).to_numpy()])
            table = table[:, table.sum(axis=0) > 0]
            res = stats.chi2_contingency(table, correction=False)
            pr, pc = table[0] / len(r), table[1] / len(c)
            out[name] = (_psi(pr, pc, eps), res.statistic, res.pvalue)
        else:
            x, y = r[name].to_numpy(np.float64), c[name].to_numpy(np.float64)
            xv, yv = x[~np.isnan(x)], y[~np.isnan(y)]
            edges = np.unique(np.quantile(xv, np.arange(1, bins) / bins))
            pr = np.append(np.bincount(np.searchsorted(edges, xv), minlength=len(edges) + 1), len(x) - len(xv)) / len(x)
            pc = np.append(np.bincount(np.searchsorted(edges, yv), minlength=len(edges) + 1), len(y) - len(yv)) / len(y)
            res = stats.ks_2samp(xv, yv, method="asymp")
            out[name] = (_psi(pr, pc, eps), res.statistic, res.pvalue)
    return out


def _psi(pr, pc, eps):
    pr, pc = np.where(pr == 0, eps, pr), np.where(pc == 0, eps, pc)
    return float(np.sum((pc - pr) * np.log(pc / pr)))


def run_limit(ref: str, cur: str, summary) -> None:
    """Read the columns and count them into the reference PSI bins: np.histogram / value counts, one process."""
    for path in (ref, cur):
        for file in sorted(os.listdir(path)):
            table = pq.read_table(os.path.join(path, file))
            for name in table.column_names:
                col = table.column(name)
                if name in summary.numeric:
                    x = col.to_numpy()
                    edges = summary.numeric[name].psi_edges
                    np.histogram(x[~np.isnan(x)], bins=np.concatenate(([-1e308], edges, [1e308])))
                else:
                    col.value_counts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of reference and current")
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-baseline", action="store_true", help="time only kon_ray and the limit")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench_drift_")
    try:
        t = time.perf_counter()
        ref, cur = os.path.join(tmp, "reference"), os.path.join(tmp, "current")
        generate(ref, args.rows, args.features, 0.0, 1)
        generate(cur, args.rows, args.features, 0.15, 2)
        size = sum(os.path.getsize(os.path.join(d, f)) for d in (ref, cur) for f in os.listdir(d))
        print(f"data: {args.rows:,} rows x {args.features} features per side, {size / 2**20:.0f} MiB Parquet,"
              f" generated in {time.perf_counter() - t:.1f} s")

        from kon_ray.cluster.config import ClusterConfig
        from kon_ray.cluster.local import init_local_ray

        t = time.perf_counter()
        init_local_ray(ClusterConfig(num_cpus=args.cpus, data_cpu_reserve=0, object_store_gb=2.0))
        print(f"ray start: {time.perf_counter() - t:.1f} s (not counted)")

        with PeakRss() as mem:
            t = time.perf_counter()
            summary, ours = run_kon_ray(ref, cur)
            t_ours = time.perf_counter() - t
        print(f"kon_ray:  {t_ours:8.1f} s   peak RSS {mem.peak / 2**30:.2f} GiB")

        with PeakRss() as mem:
            t = time.perf_counter()
            run_limit(ref, cur, summary)
            t_limit = time.perf_counter() - t
        print(f"limit:    {t_limit:8.1f} s   peak RSS {mem.peak / 2**30:.2f} GiB   kon_ray / limit = {t_ours / t_limit:.2f}x")

        if not args.skip_baseline:
            with PeakRss() as mem:
                t = time.perf_counter()
                base = run_baseline(ref, cur)
                t_base = time.perf_counter() - t
            print(f"baseline: {t_base:8.1f} s   peak RSS {mem.peak / 2**30:.2f} GiB   baseline / kon_ray = {t_base / t_ours:.2f}x")
            dpsi = max(abs(ours[k]["psi"] - base[k][0]) for k in base)
            dstat = max(abs(ours[k]["statistic"] - base[k][1]) for k in base)
            bound = max((ours[k]["ks_upper"] or 0) - (ours[k]["statistic"] or 0) for k in base if k in summary.numeric)
            print(f"max |PSI - baseline| = {dpsi:.2e}; max |statistic - baseline| = {dstat:.2e}"
                  f" (KS bound stated: {bound:.2e})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
