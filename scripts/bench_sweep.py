"""Benchmark: a 12-point grid (model.max_depth=4,6,8 x model.eta=0.05,0.1,0.2,0.3), today's sequential sweep
(`python -m kon_ray.run -m`, Hydra's basic launcher: one job after another) against the new one
(`python -m kon_ray.sweep`: trials at once on Ray Tune), without and with ASHA early stopping, in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_sweep.py                  # 200k-row POLA sample
    RAY_AUTH_MODE=disabled .venv/bin/python scripts/bench_sweep.py --rows 20000 --rounds 60

Each variant is a fresh `python -m ...` process (its own local Ray) on the same data, after the shared stages
(ingest, preprocess, drift, segment) were computed once into the bench's cache, so every variant reuses them and
the figures are the trials' (the sequential jobs run `stages=[...,train]`: training, what the trials do; tracking
off everywhere). Printed, and written to <work>/bench_sweep.json: wall time, CPU-seconds (the variant's process and
all its descendants: Ray's GCS, raylet, workers, sampled every 0.2 s), boosting rounds trained in total, and the
best validation mlogloss per population.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parent.parent
GRID = ["model.max_depth=4,6,8", "model.eta=0.05,0.1,0.2,0.3"]
POPULATIONS = ("domestic", "industrial")


class TreeCpu:
    """CPU-seconds of a process and its descendants, sampled every 0.2 s (processes that end in between keep their
    last sample)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.done = pid, False
        self.seen: Dict[tuple, float] = {}
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        import psutil

        while not self.done:
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    times = proc.cpu_times()
                    self.seen[(proc.pid, proc.create_time())] = times.user + times.system + \
                        times.children_user + times.children_system
                except psutil.Error:
                    pass
            time.sleep(0.2)

    def stop(self) -> float:
        self.done = True
        self.thread.join()
        return sum(self.seen.values())


def run(name: str, args: List[str], log: Path) -> Dict[str, float]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO))
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        meter = TreeCpu(proc.pid)
        code = proc.wait()
    wall = time.perf_counter() - start
    cpu = meter.stop()
    print(f"{name}: exit {code}, {wall:.1f} s wall, {cpu:.1f} CPU-s  (log: {log})", flush=True)
    if code not in (0,):
        raise SystemExit(f"{name} failed: see {log}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def sequential_results(folder: Path) -> Dict[str, Any]:
    """Rounds and best validation mlogloss of today's sweep, from each job's model folders."""
    rounds, best = 0, {pop: float("inf") for pop in POPULATIONS}
    for meta_path in glob.glob(str(folder / "*" / "models" / "*" / "metadata.json")):
        meta = json.loads(Path(meta_path).read_text())
        rounds += int(meta["rounds_trained"])
        pop = meta["population"]
        best[pop] = min(best[pop], float(meta["metrics"]["best_validation_mlogloss"]))
    return {"rounds": rounds, "best": best}


def sweep_results(folder: Path) -> Dict[str, Any]:
    summary = json.loads((folder / "sweep_summary.json").read_text())
    return {"rounds": summary["rounds"], "best": {p: b["validation_mlogloss"] for p, b in summary["best"].items()},
            "counts": summary["counts"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=100, help="model.num_boost_round (early stopping: 10)")
    parser.add_argument("--work", default="/tmp/kon_bench_sweep")
    parser.add_argument("--grace", type=int, default=10, help="sweep.grace_period (ASHA)")
    options = parser.parse_args()
    work = Path(options.work).resolve()
    data, cache = work / f"POLA-{options.rows}", work / "cache"
    work.mkdir(parents=True, exist_ok=True)
    common = ["+dataset=POLA", f"dataset.path={data}", f"cache_dir={cache}", "tracking=off",
              f"model.num_boost_round={options.rounds}"]
    if not (data / "_manifest.json").exists():
        run("generate", ["-m", "kon_ray.synth", "+dataset=POLA", f"synth.rows={options.rows}",
                         f"dataset.path={data}"], work / "generate.log")
    run("shared stages", ["-m", "kon_ray.run", *common, "stages=[ingest,preprocess,drift,segment]",
                          f"hydra.run.dir={work}/shared"], work / "shared.log")
    stamp = time.strftime("%H%M%S")
    results: Dict[str, Dict[str, Any]] = {}
    seq_dir = work / f"sequential-{stamp}"
    results["sequential (kon_ray.run -m)"] = {
        **run("sequential", ["-m", "kon_ray.run", "-m", *common, "stages=[ingest,preprocess,drift,segment,train]",
                             *GRID, f"hydra.sweep.dir={seq_dir}"], work / "sequential.log"),
        **sequential_results(seq_dir)}
    for label, scheduler in (("concurrent, no early stopping", "none"), ("concurrent + ASHA", "asha")):
        folder = work / f"sweep-{scheduler}-{stamp}"
        # a fresh trial cache for each, so nothing is reused between the variants; the shared stages linked in
        fresh = work / f"cache-{scheduler}-{stamp}"
        fresh.mkdir()
        for stage in cache.iterdir():
            if stage.name.split("-")[0] in ("ingest", "preprocess", "drift", "segment"):
                (fresh / stage.name).symlink_to(stage)
        results[label] = {
            **run(label, ["-m", "kon_ray.sweep", *common, *GRID, f"sweep.scheduler={scheduler}",
                          f"sweep.grace_period={options.grace}", f"sweep.dir={folder}",
                          f"cache_dir={fresh}"], work / f"sweep-{scheduler}.log"),
            **sweep_results(folder)}
    base = results["sequential (kon_ray.run -m)"]
    lines = ["| variant | wall s | CPU-s | speed-up | boosting rounds | best domestic | best industrial |",
             "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        best = r["best"]
        lines.append(f"| {label} | {r['wall_s']} | {r['cpu_s']} | {float(base['wall_s']) / float(r['wall_s']):.2f}x "
                     f"| {r['rounds']} | {best['domestic']:.5f} | {best['industrial']:.5f} |")
    print("\n".join(lines))
    (work / "bench_sweep.json").write_text(json.dumps({"rows": options.rows, "rounds": options.rounds,
                                                       "results": results}, indent=2))


if __name__ == "__main__":
    main()
