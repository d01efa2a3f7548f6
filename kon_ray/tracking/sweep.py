"""Sweeps: `python -m kon_ray.run -m +dataset=POLA model.max_depth=4,6,8 model.eta=0.05,0.1`.

Hydra's basic launcher runs the jobs one after another in this process (so the first job's local Ray serves them
all). `SweepCallback` (conf/config.yaml `hydra.callbacks`) wraps them:

- `on_multirun_start`: when tracking is on, creates one MLflow parent run (tag `sweep=parent`) and puts its id in
  `$KON_MLFLOW_PARENT_RUN_ID` and `<sweep dir>/mlflow_parent_run.json`; each job's run starts as its child
  (kon_ray/tracking/tracker.py reads the variable, kon_ray/tracking/common.py names it);
- each job, from `kon_ray.run.run`, records its metrics (named as in MLflow) with `record_job`;
- `on_multirun_end`: picks the best job per population by `tracking.best_metric` (`<population>/<best_metric>`;
  a name with a `/` is one key for the whole run) and `tracking.best_mode`, prints the summary, writes
  `<sweep dir>/sweep_summary.json` and logs it, with `best/<population>/<metric>` metrics and `best.<population>.*`
  tags, to the parent run, then ends the parent run.

If a job's failure ends the whole multirun (the process exits), an exit hook still writes the summary of the jobs
so far and ends the parent run as FAILED (KILLED after Ctrl-C). The summary works with tracking off too (no
parent run, no MLflow).
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import math
import os
from typing import Any, Dict, List, Mapping, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from kon_ray.config import POPULATIONS
from kon_ray.tracking.common import PARENT_RUN_ENV, git_state, import_mlflow, one_line
from kon_ray.tracking.config import TrackingConfig
from kon_ray.tracking.names import best_metric_keys, redact_overrides, run_metric_names, safe_name
from kon_ray.tracking.uri import check_uri, resolve_uri

log = logging.getLogger(__name__)

SUMMARY_FILE = "sweep_summary.json"
PARENT_FILE = "mlflow_parent_run.json"

_JOBS: List[Dict[str, Any]] = []  # the jobs of the multirun in progress, in the order they ran


def record_job(results: Mapping[str, Mapping[str, Any]], run_id: Optional[str], error: Optional[BaseException]) -> None:
    """Called by kon_ray.run.run after each run; a no-op outside a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra = HydraConfig.get()
    except (ValueError, ImportError):
        return
    if hydra.mode != RunMode.MULTIRUN:
        return
    if error is None:
        status = "finished"
    elif isinstance(error, KeyboardInterrupt):
        status = "interrupted"
    else:
        status = "failed"
    _JOBS.append(
        {
            "job": int(hydra.job.num),
            "overrides": redact_overrides(hydra.overrides.task),
            "status": status,
            "error": one_line(error) if error is not None else None,
            "run_id": run_id,
            "output_dir": hydra.runtime.output_dir,
            "metrics": run_metric_names(results),
        }
    )


def _swept(jobs: List[Dict[str, Any]]) -> Dict[int, Dict[str, str]]:
    """job -> the overrides that differ between jobs (what the sweep varied)."""
    values: Dict[str, set] = {}
    for job in jobs:
        for override in job["overrides"]:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    varied = {key for key, seen in values.items() if len(seen) > 1} or set(values)
    return {
        job["job"]: {k: v for k, _, v in (o.partition("=") for o in job["overrides"]) if k in varied} for job in jobs
    }


def summarize(
    jobs: List[Dict[str, Any]], best_metric: str, best_mode: str, populations: List[str]
) -> Dict[str, Any]:
    """The sweep's summary: each job, and the best finished job per population."""
    params = _swept(jobs)
    best: Dict[str, Any] = {}
    for population, key in best_metric_keys(best_metric, populations).items():
        scored = [
            (job["metrics"][key], job)
            for job in jobs
            if job["status"] == "finished" and key in job["metrics"] and not math.isnan(job["metrics"][key])
        ]
        if not scored:
            best[population] = {"metric": key, "value": None, "reason": f"no finished job reported {key}"}
            continue
        pick = max if best_mode == "max" else min
        value, job = pick(scored, key=lambda item: item[0])
        best[population] = {
            "metric": key,
            "value": value,
            "job": job["job"],
            "params": params.get(job["job"], {}),
            "run_id": job["run_id"],
            "output_dir": job["output_dir"],
            "metrics": {k: v for k, v in job["metrics"].items() if k.startswith(f"{population}/")},
        }
    return {
        "best_metric": best_metric,
        "best_mode": best_mode,
        "jobs": [job | {"params": params.get(job["job"], {})} for job in jobs],
        "best": best,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    jobs = summary["jobs"]
    lines = [f"sweep: {len(jobs)} job(s), best by {summary['best_metric']} ({summary['best_mode']})"]
    for population, best in summary["best"].items():
        if best.get("value") is None:
            lines.append(f"  {population}: {best['reason']}")
        else:
            chosen = " ".join(f"{k}={v}" for k, v in best["params"].items()) or "(no swept params)"
            lines.append(f"  {population}: {best['metric']}={best['value']:.6g} job {best['job']}: {chosen}")
    failed = [job for job in jobs if job["status"] != "finished"]
    for job in failed:
        lines.append(f"  job {job['job']} {job['status']}: {job['error']}")
    return "\n".join(lines)


class SweepCallback(Callback):
    """Hydra callback: one MLflow parent run per multirun, and the sweep summary at its end."""

    def __init__(self) -> None:
        self.parent_run_id: Optional[str] = None
        self.sweep_dir: Optional[str] = None
        self.uri: Optional[str] = None
        self.tracking: Any = None
        self.populations: List[str] = []
        self._open = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:

        _JOBS.clear()
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.populations = list(POPULATIONS)
        self.tracking = OmegaConf.to_object(config.tracking) if "tracking" in config else TrackingConfig()
        self._open = True
        atexit.register(self._at_exit)
        if not self.tracking.enabled:
            return

        self.uri = resolve_uri(self.tracking.uri)
        check_uri(self.uri)
        import_mlflow()
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.uri)
        experiment = client.get_experiment_by_name(self.tracking.experiment)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(self.tracking.experiment)
        )
        dataset = OmegaConf.select(config, "dataset.name", default="none")
        run = client.create_run(
            experiment_id,
            run_name=f"{dataset}-sweep-{dt.datetime.now():%Y%m%d-%H%M%S}",
            tags={
                "sweep": "parent",
                "dataset": str(dataset),
                "overrides": " ".join(redact_overrides(config.hydra.overrides.task)),
                "sweep_dir": self.sweep_dir,
                "status": "running",
                **git_state(),
            },
        )
        self.parent_run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        os.makedirs(self.sweep_dir, exist_ok=True)
        with open(os.path.join(self.sweep_dir, PARENT_FILE), "w", encoding="utf-8") as out:
            json.dump({"tracking_uri": self.uri, "parent_run_id": self.parent_run_id}, out, indent=2)
        log.info("sweep: MLflow parent run %s", self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish(aborted=False)

    def _at_exit(self) -> None:
        if self._open:
            self._finish(aborted=True)

    def _finish(self, aborted: bool) -> None:
        if not self._open:
            return
        self._open = False
        os.environ.pop(PARENT_RUN_ENV, None)
        jobs = list(_JOBS)
        summary = summarize(jobs, self.tracking.best_metric, self.tracking.best_mode, self.populations)
        summary["parent_run_id"] = self.parent_run_id
        summary["sweep_dir"] = self.sweep_dir
        summary["complete"] = not aborted
        if self.sweep_dir:
            os.makedirs(self.sweep_dir, exist_ok=True)
            with open(os.path.join(self.sweep_dir, SUMMARY_FILE), "w", encoding="utf-8") as out:
                json.dump(summary, out, indent=2, default=str)
        print(format_summary(summary) + f"\nsweep summary: {os.path.join(self.sweep_dir or '.', SUMMARY_FILE)}")
        if self.parent_run_id:
            self._log_parent(self.parent_run_id, summary, jobs, aborted)

    def _log_parent(self, parent_run_id: str, summary: Dict[str, Any], jobs: List[Dict[str, Any]],
                    aborted: bool) -> None:
        from mlflow.entities import Metric, RunTag
        from mlflow.tracking import MlflowClient


        client = MlflowClient(self.uri)
        interrupted = any(job["status"] == "interrupted" for job in jobs)
        failed = aborted or any(job["status"] != "finished" for job in jobs)
        status = "KILLED" if interrupted else "FAILED" if failed else "FINISHED"
        try:
            now = int(dt.datetime.now().timestamp() * 1000)
            metrics, tags = [Metric("sweep/jobs", float(len(jobs)), now, 0)], [
                RunTag("status", status.lower()),
                RunTag("sweep.failed_jobs", str(sum(job["status"] != "finished" for job in jobs))),
            ]
            for population, best in summary["best"].items():
                if best.get("value") is None:
                    continue
                metrics.append(Metric(safe_name(f"best/{best['metric']}"), float(best["value"]), now, 0))
                tags.append(RunTag(f"best.{population}.run_id", str(best["run_id"])))
                tags.append(RunTag(f"best.{population}.params", json.dumps(best["params"])[:5000]))
            client.log_batch(parent_run_id, metrics=metrics, tags=tags)
            client.log_dict(parent_run_id, json.loads(json.dumps(summary, default=str)), SUMMARY_FILE)
        except Exception as exc:
            log.warning("sweep: could not log the summary to the parent run: %s", exc)
        finally:
            client.set_terminated(parent_run_id, status)
