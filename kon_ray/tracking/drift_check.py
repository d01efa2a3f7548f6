"""One MLflow run per standalone drift check (`python -m kon_ray.drift ... tracking.uri=URI`).

Checks of new batches against one reference summary land in one experiment, so each feature's PSI becomes a time
series (one point per run; `python -m kon_ray.drift.history` draws them). The experiment is `tracking.experiment`,
else `drift-<first 12 hex digits of the reference fingerprint>`. The fingerprint is the sha256 of the reference
summary's canonical JSON (sorted keys, no spaces): a check from `reference=DATA` and later checks from the
`reference_summary.json` it wrote share it.

What one run holds, named as the pipeline's drift stage names them (kon_ray/tracking/names.py), so the history
reads pipeline runs and standalone runs alike:

- metrics `psi/<feature>`, `drift/features`, `drift/drifted`, `drift/drifted_share`, `drift/drift_flag` (0/1),
  `drift/rows`; with a scored model `prediction_drift/psi_max` and `prediction_psi/<population>/<class>`;
- params `reference.fingerprint`, `reference.source`, `reference.rows`, `current`, `output` and the thresholds
  `drift.psi_moderate`, `drift.psi_high`, `drift.p_value`, `drift.drift_share`, `drift.psi_bins`;
- tags `kind=drift_check`, `reference.fingerprint`, `current`, `drift_flag` (true/false), `prediction_drift`,
  `status` (finished, or stopped with `stopped_by=drift_gate` when `drift.fail_on_drift` stops the check);
- artifacts: the output folder's drift_report.json, drift_summary.txt, drift_report.html, reference_summary.json.

The run is created once the check has its numbers (with the check's start time): a check that fails before that
leaves no run. The target is checked before Ray starts (`check_target`); a logging failure after that is a warning,
never a changed exit code, like the pipeline's tracker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from typing import Any, Dict, Mapping, Optional

from kon_ray import storage
from kon_ray.drift.check import metrics
from kon_ray.drift.report import REFERENCE_SUMMARY
from kon_ray.secrets import redact_text
from kon_ray.stages import GateVerdict
from kon_ray.tracking import names, outputs
from kon_ray.tracking.common import import_mlflow, one_line, prepare_store
from kon_ray.tracking.config import DriftTrackingConfig
from kon_ray.tracking.uri import check_uri, resolve_uri, ui_hint

log = logging.getLogger(__name__)

KIND = "drift_check"
FINGERPRINT_TAG = "reference.fingerprint"
THRESHOLDS = ("psi_moderate", "psi_high", "p_value", "drift_share", "psi_bins")


def check_target(tracking: DriftTrackingConfig) -> Optional[str]:
    """The resolved tracking URI, checked (server answers, plugin installed), or None when not tracking."""
    if tracking.uri is None:
        return None
    uri = resolve_uri(tracking.uri)
    check_uri(uri, untracked="leave tracking.uri out (the check then runs untracked)")
    return uri


def reference_fingerprint(summary_path: str) -> str:
    """sha256 of the reference summary's canonical JSON: the same reference, the same fingerprint."""
    canonical = json.dumps(storage.read_json(summary_path), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def experiment_name(tracking: DriftTrackingConfig, fingerprint: str) -> str:
    return tracking.experiment or f"drift-{fingerprint[:12]}"


def run_name(tracking: DriftTrackingConfig, current: str, when: dt.datetime) -> str:
    if tracking.run_name:
        return tracking.run_name
    base = re.sub(r"\.parquet$", "", os.path.basename(current.rstrip("/")) or current)
    return f"{base}-{when:%Y%m%d-%H%M%S}"


def check_metrics(report: Mapping[str, Any]) -> Dict[str, float]:
    """The check's metrics under the names the pipeline's drift stage logs them."""

    return dict(names.stage_metric_names("drift", metrics(dict(report)), set()))


def log_check(
    tracking: DriftTrackingConfig,
    uri: str,
    report: Mapping[str, Any],
    output_dir: str,
    drift_cfg: Any,
    current: str,
    started: float,
    stopped: Optional[GateVerdict] = None,
) -> Optional[str]:
    """Log one finished check as one run; its run id, or None (with a warning) when logging failed."""

    try:
        fingerprint = reference_fingerprint(storage.join(output_dir, REFERENCE_SUMMARY))
        return _log(tracking, uri, report, output_dir, drift_cfg, current, started, stopped, fingerprint)
    except Exception as exc:  # the check itself is done and its reports written: tracking must not change that
        log.warning("tracking: could not log the drift check to %s: %s", redact_text(uri),
                    redact_text(f"{type(exc).__name__}: {exc}"))
        log.debug("tracking failure", exc_info=True)
        return None


def _log(tracking, uri, report, output_dir, drift_cfg, current, started, stopped, fingerprint) -> str:
    from mlflow.entities import Metric, Param, RunTag


    # quiet MLflow's logging; the global URI too: sagemaker-mlflow signs and routes by mlflow.get_tracking_uri()
    import_mlflow().set_tracking_uri(uri)
    from mlflow.tracking import MlflowClient

    prepare_store(uri)  # checks started together on a fresh sqlite file
    client = MlflowClient(uri)
    experiment_id = _experiment(client, experiment_name(tracking, fingerprint), fingerprint)
    summary = report.get("summary") or {}
    flag = str(bool(summary.get("drift_flag"))).lower()
    tags = {
        "kind": KIND,
        FINGERPRINT_TAG: fingerprint,
        "current": current,
        "drift_flag": flag,
        "status": "stopped" if stopped else "finished",
    }
    if stopped is not None:
        tags.update({"stopped_by": "drift_gate", "error": one_line(stopped.error())})
    run = client.create_run(experiment_id, start_time=int(started * 1000), tags=tags,
                            run_name=run_name(tracking, current, dt.datetime.fromtimestamp(started)))
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = check_metrics(report)
    predicted, predicted_tags = outputs.prediction_drift(output_dir)
    metrics.update(predicted)
    params = {
        FINGERPRINT_TAG: fingerprint,
        "reference.source": str(report.get("reference", "")),
        "reference.rows": str((report.get("rows") or {}).get("reference", "")),
        "current": current,
        "output": output_dir,
        **{f"drift.{key}": str(getattr(drift_cfg, key)) for key in THRESHOLDS},
    }
    client.log_batch(
        run_id,
        metrics=[Metric(name, float(value), now, 0) for name, value in metrics.items()],
        params=[Param(key, names.param_value(value)) for key, value in params.items()],
        tags=[RunTag(key, str(value)[:5000]) for key, value in predicted_tags.items()],
    )
    with outputs.scratch_dir() as scratch:
        for path, relative in outputs.artifact_files(output_dir):
            subdir = os.path.dirname(relative)
            client.log_artifact(run_id, outputs.local_file(path, scratch), artifact_path=subdir or None)
    client.set_terminated(run_id, "FAILED" if stopped else "FINISHED")
    log.info("tracking: drift check logged as MLflow run %s in experiment %r; %s", run_id,
             experiment_name(tracking, fingerprint), ui_hint(uri))
    return run_id


def _experiment(client, name: str, fingerprint: str) -> str:
    """The experiment's id, created (tagged with the reference fingerprint) when it does not exist yet."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, tags={FINGERPRINT_TAG: fingerprint, "kind": KIND})
    except MlflowException:  # another check created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
