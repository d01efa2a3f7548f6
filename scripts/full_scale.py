"""The full-scale run, measured: generate CLIE (4M), POLA (3.5M) and HFAC (2.5M) rows and run the whole pipeline on
each on this machine, recording every stage's wall time, the CPU-seconds of every process (driver, Ray's daemons and
workers), the peak memory of all of them together (their summed PSS, see kon_ray/memory.py), the dataset's rows per
second through the stage and how much Ray spilled to disk.

    .venv/bin/python scripts/full_scale.py                      # all three datasets at full scale
    .venv/bin/python scripts/full_scale.py --datasets POLA --rows 1000000 --out /tmp/kon_full

Writes <out>/full_scale.json and prints a Markdown table for BENCHMARKS.md. Tracking is off (MLflow timing is
not the point here); the object store and CPU settings are those of conf/cluster/local.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from kon_ray.config import CONF_DIR, load_config, register_configs, to_plain  # noqa: E402
from kon_ray.memory import PeakMemory  # noqa: E402


class StageRecorder:
    """Pipeline observer: per stage, wall time, CPU-seconds of every process and the peak memory seen since the
    previous stage ended; rows/s is the dataset's rows over the stage's wall time (records through the stage)."""

    def __init__(self, peak: PeakMemory, rows: int) -> None:
        self.peak, self.rows = peak, rows
        self.cpu_mark = peak.cpu_seconds()
        self.stages: List[Dict[str, Any]] = []

    def stage_finished(self, stage, seconds, metrics, folder, gate=None):
        peak_gib = self.peak.reset() / 1024**3
        cpu_now = self.peak.cpu_seconds()
        cpu, self.cpu_mark = cpu_now - self.cpu_mark, cpu_now
        spilled_gib = metrics.get("spilled_bytes", 0) / 1024**3
        self.stages.append({"stage": stage, "seconds": round(seconds, 1), "cpu_s": round(cpu, 1),
                            "peak_gib": round(peak_gib, 2), "spilled_gib": round(spilled_gib, 2),
                            "rows_per_s": round(self.rows / max(seconds, 1e-9)), "metrics": _numbers(metrics)})
        print(f"  {stage:<10} {seconds:8.1f} s  {cpu:8.1f} CPU-s  peak {peak_gib:5.2f} GiB  "
              f"spilled {spilled_gib:5.2f} GiB", flush=True)


def _numbers(metrics: Dict[str, Any]) -> Dict[str, float]:
    """The stage's numeric metrics (rounds trained, rows scored, ...), kept to say where the time went."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def compose_for(dataset: str, overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=[f"+dataset={dataset}", *overrides])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["CLIE", "POLA", "HFAC"])
    parser.add_argument("--rows", type=int, default=None, help="rows per dataset (default: each one's full_rows)")
    parser.add_argument("--out", default="/tmp/kon_full_scale")
    parser.add_argument("--sample-every", type=float, default=2.0,
                        help="seconds between memory samples (each reads every Ray process's PSS: ~0.1 CPU s)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the pipeline")
    args = parser.parse_args()

    import ray

    from kon_ray.cluster.config import LocalCluster, of_kind
    from kon_ray.cluster.local import init_local_ray
    from kon_ray.context import RunContext
    from kon_ray.pipeline import run_pipeline
    from kon_ray.synth.writer import generate

    out = Path(args.out)
    record = out / "full_scale.json"  # written after every dataset; later invocations add to it
    results = json.loads(record.read_text()) if record.exists() else {"datasets": {}}
    results["machine"] = f"{os.cpu_count()} cores, {platform.machine()}"
    for name in args.datasets:
        data = out / "data" / name
        cfg = compose_for(name, [f"dataset.path={data}", "tracking=off", *args.overrides])
        with open_dict(cfg):
            cfg.output_dir = str(out / "runs" / name)
            # a stage cache of its own, emptied first: every stage is computed, never reused from an earlier run
            cfg.cache_dir = str(out / "cache" / name)
            if args.rows:
                cfg.synth.rows = args.rows
        shutil.rmtree(cfg.cache_dir, ignore_errors=True)
        config = load_config(cfg)
        rows = config.synth.rows or config.dataset.full_rows
        with open_dict(cfg):
            cfg.synth.rows = rows
        config = load_config(cfg)
        print(f"{name}: {rows:,} rows", flush=True)
        generated = None
        if not data.exists():
            start = time.perf_counter()
            with PeakMemory(args.sample_every) as gen_peak:
                cpu_before = gen_peak.cpu_seconds()
                generate(config.dataset, config.synth, str(data))
                gen_cpu = gen_peak.cpu_seconds() - cpu_before
            generated = {"seconds": round(time.perf_counter() - start, 1), "cpu_s": round(gen_cpu, 1),
                         "peak_gib": round(gen_peak.gib, 2)}
            print(f"  generated in {generated['seconds']} s, {gen_cpu:.1f} CPU-s, peak {gen_peak.gib:.2f} GiB",
                  flush=True)
        init_local_ray(of_kind(config.cluster, LocalCluster))
        try:
            with PeakMemory(args.sample_every) as peak:
                recorder = StageRecorder(peak, rows)
                start = time.perf_counter()
                run_pipeline(RunContext(config=config, plain=to_plain(cfg), run_dir=config.output_dir), recorder)
                total = time.perf_counter() - start
        except BaseException:
            ray.shutdown()  # Ctrl-C or a failed stage: no Ray left running to skew the next measurement
            raise
        results["datasets"][name] = {"rows": rows, "total_seconds": round(total, 1), "stages": recorder.stages,
                                     "total_cpu_s": round(sum(s["cpu_s"] for s in recorder.stages), 1),
                                     "generated": generated,
                                     "peak_gib": round(max(s["peak_gib"] for s in recorder.stages), 2)}
        ray.shutdown()
        out.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(results, indent=2))
    print("\n| dataset | rows | stage | wall time (s) | CPU-s, every process | rows/s | peak PSS, all processes (GiB) "
          "| spilled (GiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results["datasets"].items():
        for stage in result["stages"]:
            print(f"| {name} | {result['rows']:,} | {stage['stage']} | {stage['seconds']} | {stage.get('cpu_s', '')} "
                  f"| {stage.get('rows_per_s', ''):,} | {stage['peak_gib']} | {stage['spilled_gib']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
