"""One MLflow run per pipeline run, logged from the driver between stages (never from inside Ray tasks).

`tracked_run(config, plain, log_file)` is a context manager around `run_pipeline`; it yields a `Tracker`, the
pipeline's `StageObserver`. What lands where:

- at start: the composed config as params (dot keys, secrets `***`, kon_ray/tracking/names.py), tags `dataset`,
  `populations`, `kon_ray_version`, `git.commit` / `git.dirty`, `status=running`; in a sweep the run is a child
  of the sweep's parent run (`mlflow.parentRunId`, kon_ray/tracking/sweep.py);
- after each stage: `time/<stage>` (seconds), the stage's metrics (`ingest/rows`, `psi/<feature>`,
  `domestic/macro_f1`, `<stage>/cached`...), its reports, states and manifests as artifacts under the stage's
  folder name (`drift/drift_report.html`, `features/feature_state.json`...); after ingest the dataset fingerprint
  (params `data.path`, `data.rows`, `data.schema_hash`, `data.fingerprint`); after drift the tag `drift_flag`
  and the prediction drift (`prediction_drift/psi_max`, `prediction_psi/<population>/<class>`, tag
  `prediction_drift` = its severity or `not_checked`); after train, per population, the training curves
  (`domestic/curve/validation_mlogloss`, step = boosting round), the final metrics from metadata.json and the
  model (an MLflow logged model of flavor xgboost, saved with `mlflow.xgboost.save_model`: input example = a few
  test rows, signature inferred; linked to the run at step = its boosting rounds), its id in the tag
  `model_id.<population>`; from then on every `<population>/...` metric (the final ones, infer's
  `<population>/test/macro_f1`) is linked to that population's model;
- at the end, success or not: the Hydra `.hydra/` folder, the run's log file, `status` tag, and the run's end
  status. Only a successful run registers its models (`tracking.register_models`), as `<dataset>-<population>`,
  with the population's metrics in the version's description.

A run the drift gate stops (`drift.fail_on_drift=true`) is told about the stopping stage like any other before it
ends, with the gate's verdict (kon_ray/pipeline.py calls `stage_finished(..., gate)`): its reports, `psi/<feature>`,
`drift/drift_flag`, the `drift_flag` tag and the prediction drift are in MLflow, plus `drift/stopped_by_gate` = 1,
and the verdict decides how the run ends. Nothing of it is read back from disk.

How a run ends (MLflow status, tag `status`):

| outcome                          | MLflow status | tags                                                  |
|----------------------------------|---------------|-------------------------------------------------------|
| success                          | FINISHED      | status=finished                                       |
| drift gate (a stage's verdict)   | FAILED        | status=stopped, stopped_by=drift_gate, error=<line>   |
| Ctrl-C (KeyboardInterrupt)       | KILLED        | status=interrupted, error=interrupted                 |
| any other error                  | FAILED        | status=failed, error=<line>; traceback in error.txt   |

The drift gate is FAILED rather than KILLED: KILLED means someone stopped the run from outside, while the gate is
the pipeline refusing to train on drifted data, a result that `status = FAILED` filters should catch; the tag
`stopped_by=drift_gate` tells it apart from a crash.

Logging problems never stop a pipeline that works, and are never silent. Whatever of a stage could not be logged
(the server went away, a request was refused, a model failed to serialize) is recorded per stage: the run gets the
tag `tracking_incomplete=<stages>`, the run folder's `tracking.json` says what is missing and where the run is, and
the command's last line says so with the one command that repairs it, `python -m kon_ray.tracking.log RUN_FOLDER`
(kon_ray/tracking/log.py; exit code 6). A server that does not answer when the run starts is the same case: the
pipeline runs untracked, its outputs are published, and the last line says how to log them. A tracking target that
cannot work at all (a malformed ARN, the plugin missing, an unwritable database) is a ConfigError before any stage.
MLflow's HTTP retries are bounded (tracking/uri.py `bound_http_retries`), and after a failed request a stage is
logged only if the server answers its /health again, so a dead server costs seconds, not minutes per stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from typing import Any, Dict, Iterator, List, Mapping, Optional

import kon_ray
from kon_ray import stages, storage
from kon_ray.config import POPULATIONS, KonConfig
from kon_ray.errors import ConfigError, KonError
from kon_ray.secrets import redact_text
from kon_ray.stages import GateVerdict
from kon_ray.tracking import models, names, outputs
from kon_ray.tracking.common import PARENT_RUN_ENV, git_state, import_mlflow, one_line, prepare_store
from kon_ray.tracking.names import registered_name
from kon_ray.tracking.uri import TrackingUnreachable, answers, bound_http_retries, check_uri, resolve_uri, ui_hint

log = logging.getLogger(__name__)

# what `stages.Stage.tracked` may name: the Tracker method that logs it is `_track_<hook>`
HOOK_PREFIX = "_track_"
# the run folder's record of its MLflow run: where it is and what of it is missing (read by kon_ray/tracking/log.py)
TRACKING_FILE = "tracking.json"
INCOMPLETE_TAG = "tracking_incomplete"
RUN_FOLDER_TAG = "run_folder"
END = "end"  # what `incomplete` calls the end of the run: its log file, .hydra/, registered models, status


def outcome(exc: Optional[BaseException], gate: Optional[GateVerdict] = None) -> tuple[str, Dict[str, str]]:
    """(MLflow run status, tags) for how the run ended (see the table in the module docstring): `gate` is the
    verdict the pipeline handed the tracker with the stage that stopped the run."""
    if exc is None:
        return "FINISHED", {"status": "finished"}
    if gate is not None:
        return "FAILED", {"status": "stopped", "stopped_by": "drift_gate", "error": one_line(gate.error())}
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "KILLED", {"status": "interrupted", "error": "interrupted"}
    return "FAILED", {"status": "failed", "error": one_line(exc)}


def _hydra_dir() -> Optional[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        folder = os.path.join(HydraConfig.get().runtime.output_dir, ".hydra")
    except (ValueError, ImportError, AttributeError):
        return None
    return folder if os.path.isdir(folder) else None


def _hydra_job() -> Dict[str, str]:
    """In a Hydra job: its number (in a sweep) and overrides, for the run's tags and name."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra = HydraConfig.get()
    except (ValueError, ImportError):
        return {}
    info = {"overrides": " ".join(names.redact_overrides(hydra.overrides.task))}
    if hydra.mode == RunMode.MULTIRUN:
        info["sweep.job"] = str(hydra.job.num)
    return info


class Tracker:
    """The pipeline's StageObserver: logs each finished stage to the active MLflow run."""

    def __init__(self, config: KonConfig, plain: Mapping[str, Any], log_file: Optional[str] = None):
        self.config = config
        self.plain = plain
        self.log_file = log_file
        self.uri = resolve_uri(config.tracking.uri)
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.model_ids: Dict[str, str] = {}  # population -> MLflow logged model id
        self.metrics: Dict[str, float] = {}  # everything logged, by name (latest value): for the registry
        self.fingerprint: Dict[str, Any] = {}
        self._seen: set = set()
        self._cached: List[str] = []
        self.folders: Dict[str, str] = {}  # stage -> the folder it published (its keyed cache folder)
        self.incomplete: Dict[str, List[str]] = {}  # stage (or END) -> what of it could not be logged
        self.offline: Optional[str] = None  # why nothing reaches MLflow: no server answered when the run started
        self._failed = False  # a request failed: before the next stage, ask whether the server answers again
        self._logged_metrics: set = set()  # metrics already in the run (a resumed run: kon_ray/tracking/log.py)
        self._mlflow: Any = None  # the mlflow module, once started
        self.outcome: Dict[str, Any] = {}  # the run's end status and tags, once it ended
        self.gate: Optional[GateVerdict] = None  # the verdict of the stage whose gate stopped the run

    # -- start -------------------------------------------------------------------------------------------------
    def start(self, run_id: Optional[str] = None) -> None:
        """Start the run (or, with `run_id`, reopen that run to complete it); a server that does not answer leaves
        the tracker offline: every stage is recorded as missing, nothing stops."""
        bound_http_retries()
        try:
            check_uri(self.uri)
        except TrackingUnreachable as exc:
            self._go_offline(str(exc))
            return
        mlflow = self._mlflow = import_mlflow()
        tracking = self.config.tracking
        parent = os.environ.get(PARENT_RUN_ENV) or None
        job = _hydra_job()
        dataset = self.config.dataset.name
        tags = {
            "dataset": dataset,
            "populations": ",".join(POPULATIONS),
            "kon_ray_version": kon_ray.__version__,
            "status": "running",
            "output_dir": self.config.output_dir,
            **git_state(),
            **job,
        }
        folder = os.path.basename(self.config.output_dir.rstrip("/"))  # one per run: kon_ray/cli.py RunFolder
        name = tracking.run_name or (
            f"{dataset}-job{job['sweep.job']}" if "sweep.job" in job else f"{dataset}-{folder}"
        )
        tags[RUN_FOLDER_TAG] = self.config.output_dir
        try:
            prepare_store(self.uri)  # runs started together on a fresh sqlite file
            mlflow.set_tracking_uri(self.uri)
            experiment = mlflow.set_experiment(tracking.experiment)
            if run_id:
                run = mlflow.start_run(run_id=run_id)
            else:
                run = mlflow.start_run(run_name=name, parent_run_id=parent, tags=tags)
        except Exception as exc:  # a bad URI, an unwritable database, a parent run that is gone
            if not answers(self.uri):  # the server went away between the check and the run: not a config error
                self._go_offline(f"tracking.uri {self.uri}: no MLflow server answers ({one_line(exc)})")
                return
            raise ConfigError(
                redact_text(f"tracking: cannot start an MLflow run at {self.uri}: {one_line(exc)}")
            ) from None
        self.run_id, self.experiment_id = run.info.run_id, experiment.experiment_id
        if run_id:
            self._logged_metrics = set(run.data.metrics)
            self.model_ids = {key.split(".", 1)[1]: value for key, value in run.data.tags.items()
                              if key.startswith("model_id.")}
            log.info("tracking: completing MLflow run %s in experiment %r; %s", self.run_id, tracking.experiment,
                     ui_hint(self.uri))
            return
        try:
            self._batch(params=names.config_params(self.plain))
        except Exception as exc:
            self._missed("start", f"params: {one_line(exc)}")
        log.info("tracking: MLflow run %s (%s) in experiment %r; %s", name, self.run_id, tracking.experiment,
                 ui_hint(self.uri))

    # -- after each stage --------------------------------------------------------------------------------------
    def already_logged(self, stage: str, metrics: Mapping[str, Any], folder: str) -> None:
        """A stage a resumed run holds already: only what later stages' names and models depend on."""
        self.folders[stage] = folder
        names.stage_metric_names(stage, metrics, self._seen)

    def _go_offline(self, why: str) -> None:
        self.offline = redact_text(why)
        log.warning("tracking: %s; the run goes on untracked, and its last line says how to log it later",
                    self.offline)

    def _missed(self, stage: str, what: str) -> None:
        """Record what of `stage` did not reach MLflow (the tag, tracking.json and the last line say it)."""
        self._failed = True
        self.incomplete.setdefault(stage, []).append(redact_text(what))
        log.warning("tracking: could not log %s of stage %s", redact_text(what), stage)
        log.debug("tracking failure", exc_info=True)

    def _reachable(self) -> bool:
        """After a failed request, whether the server answers again (one quick /health), so that a server that
        went away costs one probe per stage instead of MLflow's retries on every request."""
        if self.offline or self.run_id is None:
            return False
        if self._failed:
            self._failed = not answers(self.uri)
        return not self._failed

    def stage_finished(self, stage: str, seconds: float, metrics: Dict[str, Any], folder: str,
                       gate: Optional[GateVerdict] = None) -> None:
        self.folders[stage] = folder
        if gate is not None:
            self.gate = gate  # the run ends right after this: FAILED, stopped_by=drift_gate (`outcome`)
        if not self._reachable():
            reason = self.offline or f"no MLflow server answered at {self.uri}"
            self.incomplete.setdefault(stage, []).append(f"everything ({redact_text(reason)})")
            log.warning("tracking: stage %s not logged: %s", stage, redact_text(reason))
            return
        try:
            self._stage_finished(stage, seconds, metrics or {}, folder)
        except Exception as exc:  # tracking must not stop a pipeline that works
            self._missed(stage, f"everything after the failure ({one_line(exc)})")

    def _stage_finished(self, stage: str, seconds: float, metrics: Dict[str, Any], folder: str) -> None:
        logged = dict(names.stage_metric_names(stage, metrics, self._seen))  # named first: they keep their names
        logged[f"time/{stage}"] = float(seconds)
        hook = stages.stage(stage).tracked
        if hook:  # logged first: train's logs the models, so that its `<population>/...` metrics link to them
            try:
                getattr(self, HOOK_PREFIX + hook)(folder)
            except Exception as exc:  # the stage's metrics and artifacts are still worth logging
                self._missed(stage, f"{hook} ({one_line(exc)})")
        self._metrics(logged)
        if metrics.get("cached"):
            self._cached.append(stage)
            self._tags({f"cached.{stage}": "true", "cached_stages": ",".join(self._cached)})
        self._artifacts(stage, folder)

    # -- what a stage's registry entry says to track beyond its metrics and artifacts (`Stage.tracked`) ---------
    def _track_data_fingerprint(self, folder: str) -> None:
        """ingest: the dataset's path, files, rows, schema hash and fingerprint as `data.*` params."""
        self.fingerprint = outputs.dataset_fingerprint(folder)
        self._batch(params={f"data.{k}": names.param_value(v) for k, v in self.fingerprint.items()})
        if self.fingerprint:
            self._tags({"data.fingerprint": str(self.fingerprint["fingerprint"])})

    def _track_drift_evidence(self, folder: str) -> None:
        """drift: the report's overall flag as the `drift_flag` tag, and its prediction drift."""
        flag = outputs.drift_flag(folder)
        if flag is not None:
            self._tags({"drift_flag": flag})
        predicted, predicted_tags = outputs.prediction_drift(folder)
        self._metrics(predicted)
        self._tags(predicted_tags)

    def _track_models(self, folder: str) -> None:
        """train: per population, the training curves, the final metrics and the model."""
        self._models(folder)

    def _models(self, models_folder: str) -> None:
        """Every population's model first, then its curves and final metrics (linked to the model).

        The order and the model's step are what keep the pair of server and client working (README, "Tracking"):
        MLflow's `log_model` re-logs, linked to the new model, every run metric at the model's step. Logged at step
        = its boosting rounds, before any curve, a model finds no run metric there (the run's scalars are at
        step 0), so it links only the metrics kon_ray links to it: its own population's. At step 0 it would re-log
        `psi/*` and every other scalar, which an MLflow 3.0 server refuses (BAD_REQUEST, UNIQUE constraint) once a
        run has over 100 of them."""
        found = list(outputs.population_models(models_folder))
        if self.config.tracking.log_models:
            for population, model_path, metadata in found:
                if population in self.model_ids:
                    continue  # a resumed run that has it already (kon_ray/tracking/log.py)
                try:
                    self._log_model(population, model_path, metadata)
                except Exception as exc:
                    self._missed("train", f"the {population} model ({one_line(exc)})")
        for population, _, metadata in found:
            self._curves(population, metadata)
            finals = {}
            for key, value in outputs.final_metrics(metadata).items():
                name = f"{population}/{key}"
                if name not in self._seen:
                    self._seen.add(name)
                    finals[name] = value
            self._metrics(finals)
        if found:
            self._tags({"populations": ",".join(population for population, _, _ in found)})

    def _curves(self, population: str, metadata: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(f"{population}/curve/{name}", float(value), now, step)
            for name, values in outputs.training_curves(metadata).items()
            if f"{population}/curve/{name}" not in self._logged_metrics  # a resumed run that has it already
            for step, value in enumerate(values)
        ]
        if batch:
            self._client().log_batch(self.run_id, metrics=batch)

    def _log_model(self, population: str, model_path: str, metadata: Mapping[str, Any]) -> None:
        features_folder = self.folders.get("preprocess") or os.path.join(
            self.config.output_dir, stages.stage("preprocess").folder
        )
        assert self.run_id is not None, "a model is logged to a started run"
        model_id = models.log_model_folder(
            self._mlflow, self._client(), self.run_id, population, model_path, metadata, features_folder,
            self.config.tracking.input_example_rows, self.config.dataset.name, log.warning)
        self.model_ids[population] = model_id
        self._tags({f"model_id.{population}": model_id})

    # -- end ---------------------------------------------------------------------------------------------------
    def finish(self, exc: Optional[BaseException]) -> None:
        """Record how the run ended and end it, whatever goes wrong while recording; then write the run folder's
        tracking.json (where the run is, what it misses)."""
        status, tags = outcome(exc, self.gate)
        self.end(status, tags, exc)

    def end(self, status: str, tags: Mapping[str, str], exc: Optional[BaseException] = None) -> None:
        """End the run with `status` and `tags` (a completed run keeps the status its pipeline run had)."""
        self.outcome = {"status": status, "tags": dict(tags)}
        try:
            if self.offline is None and self.run_id is not None:
                self._end_run(status, tags, exc)
        finally:
            self.write_record()

    def _end_run(self, status: str, tags: Mapping[str, str], exc: Optional[BaseException]) -> None:
        mlflow = self._mlflow
        if not self._reachable():
            self.incomplete.setdefault(END, []).append(f"the end of the run (no MLflow server answered at {self.uri})")
            log.warning("tracking: MLflow run %s could not be ended: no server answers at %s", self.run_id, self.uri)
            return
        try:
            self._tags(tags)
            if exc is not None and not isinstance(exc, (KeyboardInterrupt, KonError)):
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                mlflow.log_text(text, "error.txt", run_id=self.run_id)
            hydra_dir = _hydra_dir()
            if hydra_dir:
                mlflow.log_artifacts(hydra_dir, ".hydra", run_id=self.run_id)
            if self.log_file and os.path.isfile(self.log_file):
                mlflow.log_artifact(self.log_file, run_id=self.run_id)
            if exc is None and self.config.tracking.register_models and not self.incomplete:
                self._register_models()  # a model whose run misses a stage is not a candidate for the registry
        except Exception as problem:
            self._missed(END, f"the end of the run ({one_line(problem)})")
        try:
            incomplete = ",".join(self.incomplete)
            if incomplete:
                self._tags({INCOMPLETE_TAG: incomplete})
            elif self._has_tag(INCOMPLETE_TAG):  # a run completed later: the tag its first attempt left goes
                self._client().delete_tag(self.run_id, INCOMPLETE_TAG)
        except Exception as problem:
            self._missed(END, f"the {INCOMPLETE_TAG} tag ({one_line(problem)})")
        finally:
            try:
                mlflow.end_run(status=status)
                log.info("tracking: MLflow run %s ended %s", self.run_id, status)
            except Exception as problem:
                self._missed(END, f"the run's end status ({one_line(problem)})")

    def _has_tag(self, name: str) -> bool:
        return name in self._client().get_run(self.run_id).data.tags

    def write_record(self) -> None:
        """<run folder>/tracking.json: the tracking store, experiment and run id, and what is missing per stage;
        kon_ray/tracking/log.py reads it to complete this run rather than start another."""

        record = {
            "uri": redact_text(self.uri),
            "experiment": self.config.tracking.experiment,
            "run_id": self.run_id,
            "offline": self.offline,
            INCOMPLETE_TAG: self.incomplete,
            "outcome": self.outcome,
        }
        try:
            storage.write_json(storage.join(self.config.output_dir, TRACKING_FILE), record)
        except Exception as problem:  # the run folder itself failing is the pipeline's to report, not tracking's
            log.warning("tracking: could not write %s: %s", TRACKING_FILE, one_line(problem))

    def repair_hint(self) -> str:
        """The last line of a run whose record is incomplete: what is missing and the command that logs it."""
        missing = ", ".join(self.incomplete) or "everything"
        uri = redact_text(self.uri)
        target = f"MLflow run {self.run_id}" if self.run_id else f"MLflow ({uri})"
        return (f"outputs published, but {target} is missing stages {missing}; once the server answers, log them"
                f" with: python -m kon_ray.tracking.log {self.config.output_dir} tracking.uri={uri}")

    def _register_models(self) -> None:
        client = self._client()
        for population, model_id in self.model_ids.items():
            name = registered_name(self.config.dataset.name, population)
            version = models.register(
                self._mlflow, client, model_id, name,
                {"run_id": str(self.run_id), "data.fingerprint": str(self.fingerprint.get("fingerprint", ""))},
                self._description(population))
            log.info("tracking: registered %s version %s", name, version)

    def _description(self, population: str) -> str:
        lines = [f"{self.config.dataset.name} {population} model from run {self.run_id}"]
        if self.fingerprint:
            lines.append(
                f"data: {self.fingerprint.get('path')} ({self.fingerprint.get('rows')} rows, fingerprint "
                f"{self.fingerprint.get('fingerprint')})"
            )
        for key in sorted(self.metrics):
            if key.startswith(f"{population}/") or key.startswith(f"infer/{population}/"):
                lines.append(f"{key}: {self.metrics[key]:.6g}")
        return "\n".join(lines)

    # -- small wrappers ----------------------------------------------------------------------------------------
    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)

    def _batch(self, params: Optional[Mapping[str, str]] = None) -> None:
        from mlflow.entities import Param

        if params:
            self._client().log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])

    def _metrics(self, values: Mapping[str, float]) -> None:
        """`values` at step 0, in one request; `<population>/...` linked to that population's logged model.

        Not `mlflow.log_metrics`: once models are logged it links each new metric to every model of the run
        (a domestic metric to the industrial model too) and sends it once per model."""
        from mlflow.entities import Metric

        values = {key: value for key, value in values.items() if key not in self._logged_metrics}
        if values:
            now = int(time.time() * 1000)
            batch = [
                Metric(key, float(value), now, 0, model_id=self.model_ids.get(key.split("/", 1)[0]))
                for key, value in values.items()
            ]
            self._client().log_batch(self.run_id, metrics=batch)
            self.metrics.update(values)

    def _tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self._client().log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def _artifacts(self, stage: str, folder: str) -> None:
        base = stages.stage(stage).folder
        with outputs.scratch_dir() as scratch:
            for path, relative in outputs.artifact_files(folder):
                subdir = os.path.dirname(relative)
                target = f"{base}/{subdir}" if subdir else base
                self._mlflow.log_artifact(outputs.local_file(path, scratch), artifact_path=target, run_id=self.run_id)


@contextlib.contextmanager
def tracked_run(config: KonConfig, plain: Mapping[str, Any], log_file: Optional[str] = None) -> Iterator[Tracker]:
    """Start the run, yield the observer, and always end the run with the status its outcome deserves."""
    tracker = Tracker(config, plain, log_file)
    tracker.start()
    try:
        yield tracker
    except BaseException as exc:
        tracker.finish(exc)
        raise
    else:
        tracker.finish(None)

