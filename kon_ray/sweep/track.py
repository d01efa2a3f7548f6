"""The sweep in MLflow, logged from the driver only (never from a Ray task, so concurrent trials never write to the
store at once; the default `sqlite:///mlflow.db` is as safe as a server):

- one parent run per sweep (tag `sweep=parent`), opened before the trials start: the composed config and the
  sweep's settings as params; at the end `best/<population>/validation_mlogloss`, tags `best.<population>.params`,
  `best.<population>.command`, `best.<population>.run_id`, the summary (sweep_summary.json) and the page (sweep.html)
  as artifacts, and its status: FINISHED, FAILED when a trial failed (tag `sweep.failed_trials`), KILLED on Ctrl-C;
- one child per trial (tag `mlflow.parentRunId`): its population and point as params, `validation_mlogloss` by
  step = boosting round (the curve), tag `trial_status` FINISHED / PRUNED / FAILED, tag `node_id` (the Ray node it
  ran on); a pruned trial also has `pruned_at_round` and `pruned_by` (the rule), a failed one `error`. MLflow's own
  run status is FINISHED, KILLED for a pruned trial (stopped before its end) and FAILED;
- with `tracking.register_models=true` and no failed trial, each population's best model as a logged model of its
  trial's child run, registered as `<dataset>-<population>` (a new version, tagged with the parent and trial runs
  and the point), as a successful pipeline run registers its own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

from kon_ray import storage
from kon_ray.sweep.summary import FAILED, FINISHED, PRUNED
from kon_ray.tracking.common import git_state, import_mlflow
from kon_ray.tracking.models import log_model_folder, register
from kon_ray.tracking.names import config_params, redact_overrides, registered_name
from kon_ray.tracking.outputs import population_models
from kon_ray.tracking.uri import check_uri, resolve_uri

log = logging.getLogger(__name__)

MLFLOW_STATUS = {FINISHED: "FINISHED", PRUNED: "KILLED", FAILED: "FAILED"}
MAX_PARAM = 6000


class SweepTracker:
    """The parent run and its children, through one MlflowClient on the driver."""

    def __init__(self, uri: str, experiment: str, run_name: str, params: Mapping[str, str],
                 tags: Mapping[str, str]) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={"sweep": "parent", "status": "running", **tags})
        self.run_id = run.info.run_id
        self._log_params(self.run_id, params)

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], str(v)[:MAX_PARAM]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_trials(self, records: Sequence[Mapping[str, Any]], dataset: str) -> Dict[int, str]:
        """A child run per trial; returns trial position -> run id."""
        from mlflow.entities import Metric, RunTag

        ids: Dict[int, str] = {}
        for position, trial in enumerate(records):
            point = " ".join(f"{k}={v}" for k, v in trial["point"].items())
            tags = {"mlflow.parentRunId": self.run_id, "sweep": "trial", "trial_status": trial["status"],
                    "population": trial["population"], "trial_key": str(trial.get("trial_key") or ""),
                    "reused": str(int(trial.get("reused") or 0))}
            if trial.get("node_id"):  # the Ray node it ran on (none for a trial that failed before its first round)
                tags["node_id"] = str(trial["node_id"])
            if trial["status"] == PRUNED:
                tags.update(pruned_at_round=str(trial["rounds"]), pruned_by=str(trial["stopped_by"]))
            if trial["status"] == FAILED:
                tags["error"] = str(trial["error"])[:5000]
            name = f"{dataset}-{trial['population']}-trial{trial['index']} {point}"[:250]
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
            run_id = run.info.run_id
            ids[position] = run_id
            params = {"population": trial["population"], **{f"model.{k}": v for k, v in trial["point"].items()}}
            self._log_params(run_id, {k: str(v) for k, v in params.items()})
            now = int(dt.datetime.now().timestamp() * 1000)
            metrics = [Metric("validation_mlogloss", float(v), now, i + 1) for i, v in enumerate(trial["curve"])]
            metrics.append(Metric("rounds", float(trial["rounds"]), now, 0))
            if trial["status"] == FINISHED:
                metrics += [Metric("best_validation_mlogloss", float(trial["best_score"]), now, 0),
                            Metric("best_iteration", float(trial["best_iteration"]), now, 0)]
            for start in range(0, len(metrics), 1000):
                self.client.log_batch(run_id, metrics=metrics[start:start + 1000],
                                      tags=[RunTag(k, v) for k, v in tags.items()
                                            if k != "mlflow.parentRunId"] if start == 0 else [])
            self.client.set_terminated(run_id, MLFLOW_STATUS[trial["status"]])
        return ids

    def finish(self, summary: Mapping[str, Any], run_ids: Mapping[int, str], files: Mapping[str, str],
               status: str) -> None:
        """Best per population, the summary and the page (`files`: name -> text) on the parent run; then end it
        with `status`."""
        from mlflow.entities import Metric, RunTag

        try:
            now = int(dt.datetime.now().timestamp() * 1000)
            counts = summary["counts"]
            metrics = [Metric(f"sweep/{name.lower()}_trials", float(n), now, 0) for name, n in counts.items()]
            metrics.append(Metric("sweep/rounds", float(summary["rounds"]), now, 0))
            tags = [RunTag("status", status.lower()), RunTag("sweep.failed_trials", str(counts[FAILED]))]
            for population, best in summary["best"].items():
                if best is None:
                    continue
                metrics.append(Metric(f"best/{population}/validation_mlogloss", float(best["validation_mlogloss"]),
                                      now, 0))
                tags += [RunTag(f"best.{population}.params", json.dumps(best["point"])),
                         RunTag(f"best.{population}.command", best["command"][:5000])]
                trial_run = best_run_id(summary, run_ids, population)
                if trial_run is not None:
                    tags.append(RunTag(f"best.{population}.run_id", trial_run))
            self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
            for name, text in files.items():  # from memory: the sweep folder may be on S3
                self.client.log_text(self.run_id, text, name)
        except Exception as exc:  # noqa: BLE001 - the run must still end; the files are in the sweep folder
            log.warning("sweep: could not log the summary to the parent run: %s", exc)
        finally:
            self.client.set_terminated(self.run_id, status)

    def register_best(self, summary: Mapping[str, Any], run_ids: Mapping[int, str], sweep_dir: str,
                      features_folder: str, dataset: str, example_rows: int) -> Dict[str, str]:
        """Each population's best model (<sweep dir>/best/models/<population>/) as a logged model of its trial's
        child run, registered as `<dataset>-<population>` (`tracking.register_models=true`); population -> version.
        The version's tags name the sweep's parent run, the trial's run and its point."""
        mlflow = import_mlflow()
        mlflow.set_tracking_uri(self.uri)
        versions: Dict[str, str] = {}
        for population, model_path, metadata in population_models(storage.join(sweep_dir, "best", "models")):
            best = summary["best"].get(population)
            trial_run = best_run_id(summary, run_ids, population)
            if best is None or trial_run is None:
                continue
            model_id = log_model_folder(mlflow, self.client, trial_run, population, model_path, metadata,
                                        features_folder, example_rows, dataset, log.warning)
            name = registered_name(dataset, population)
            point = " ".join(f"model.{k}={v}" for k, v in best["point"].items())
            versions[population] = register(
                mlflow, self.client, model_id, name,
                {"run_id": trial_run, "sweep_run_id": self.run_id, "sweep.point": json.dumps(best["point"])},
                f"{dataset} {population} model: the best trial of sweep run {self.run_id} ({point}), validation"
                f" mlogloss {best['validation_mlogloss']:.6g}\nreproduce: {best['command']}")
            log.info("sweep: registered %s version %s (%s)", name, versions[population], point)
        return versions

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


def best_run_id(summary: Mapping[str, Any], run_ids: Mapping[int, str], population: str) -> Optional[str]:
    """The child run of a population's best trial (run_ids: trial position in summary["trials"] -> run id)."""
    best = summary["best"].get(population)
    if best is None:
        return None
    match = [i for i, t in enumerate(summary["trials"])
             if t["population"] == population and t["index"] == best["index"]]
    return run_ids.get(match[0]) if match else None


def parent_params(plain: Mapping[str, Any], settings: Mapping[str, Any]) -> Dict[str, str]:

    params = dict(config_params(plain))
    params.update({f"sweep.{k}": json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                   for k, v in settings.items()})
    return params


def open_tracker(uri: Optional[str], experiment: str, dataset: str, command: List[str],
                 params: Mapping[str, str]) -> SweepTracker:

    resolved = resolve_uri(uri)
    check_uri(resolved)
    import_mlflow()
    return SweepTracker(resolved, experiment, f"{dataset}-sweep-{dt.datetime.now():%Y%m%d-%H%M%S}", params,
                        {"dataset": dataset, "overrides": " ".join(redact_overrides(command))[:5000],
                         **git_state()})
