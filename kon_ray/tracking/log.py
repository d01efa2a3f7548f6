"""`python -m kon_ray.tracking.log RUN_FOLDER [tracking.uri=URI] [tracking.experiment=NAME] [...]`: log a finished
run folder (local or s3://) to MLflow after the fact.

For a run whose record is incomplete (the server went away, or never answered: the run's last line names this
command) and for a run made with `tracking=off`. It reads what the run folder holds: `index.json` (the config, and
where every stage published: kon_ray/run_index.py), each stage's `_manifest.json` (its metrics and seconds) and,
when there, `tracking.json` (the MLflow run the pipeline started, and what of it is missing: tracking/tracker.py).

Idempotent, so that it can be run again after any failure: a run logged twice is one run.
- The run the pipeline started exists at this tracking URI: only the stages its `tracking_incomplete` tag names are
  logged into it (metrics it holds are not sent again, models it has are not logged again), then the tag is removed.
- No such run (the server was down for the whole run, or another server is given): the run with the tag
  `run_folder=<RUN_FOLDER>` in the experiment is completed the same way, or created once.
- A run that is complete already: nothing is logged; the line says which run it is.
Exit codes as the pipeline's: 2 for a folder that is not a run folder or a bad key, 6 when something still could
not be logged (the server went away again).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from kon_ray import stages, storage
from kon_ray.cli import guarded
from kon_ray.config import CLUSTER_SCHEMAS, KonConfig, load_config
from kon_ray.errors import ConfigError, TrackingIncomplete
from kon_ray.manifest import MANIFEST
from kon_ray.run_index import read_index
from kon_ray.secrets import redact_text
from kon_ray.terminal import OnlyKonRay
from kon_ray.tracking.common import import_mlflow
from kon_ray.tracking.tracker import INCOMPLETE_TAG, RUN_FOLDER_TAG, TRACKING_FILE, Tracker, outcome
from kon_ray.tracking.uri import bound_http_retries, check_uri

log = logging.getLogger("kon_ray.tracking.log")  # also when it runs as __main__ (python -m)

USAGE = ("usage: python -m kon_ray.tracking.log RUN_FOLDER [tracking.uri=URI] [tracking.experiment=NAME]"
         " [tracking.register_models=true|false]")
ALLOWED_KEYS = ("tracking.uri", "tracking.experiment", "tracking.register_models", "tracking.log_models",
                "tracking.run_name")


def parse_arguments(argv: Sequence[str]) -> Tuple[str, List[str]]:
    """(run folder, tracking overrides); a ConfigError naming what is wrong."""
    folders = [a for a in argv if "=" not in a]
    overrides = [a for a in argv if "=" in a]
    if len(folders) != 1:
        raise ConfigError(f"give exactly one run folder ({USAGE})")
    for override in overrides:
        key = override.split("=", 1)[0]
        if key not in ALLOWED_KEYS:
            raise ConfigError(f"{key} cannot be set when logging a finished run; known keys: {', '.join(ALLOWED_KEYS)}")
    folder = folders[0]
    return (folder.rstrip("/") if storage.is_s3(folder) else os.path.abspath(folder)), overrides


def config_from_index(index: Mapping[str, Any], run_dir: str, overrides: Sequence[str]) -> Tuple[Any, Dict[str, Any]]:
    """The run's frozen config (and its plain form, for params) from index.json, with the tracking overrides and
    `output_dir` = the folder as given now."""

    plain = dict(index["config"])
    base = OmegaConf.structured(KonConfig)
    kind = plain.get("cluster", {}).get("kind", "local")
    base.cluster = OmegaConf.structured(CLUSTER_SCHEMAS[kind])  # the chosen kind's schema, as Hydra merges it
    cfg = OmegaConf.merge(base, plain, OmegaConf.from_dotlist(list(overrides)))
    assert isinstance(cfg, DictConfig)
    cfg.output_dir = run_dir
    if "tracking.uri" not in {o.split("=", 1)[0] for o in overrides} and "***" in str(cfg.tracking.uri or ""):
        raise ConfigError("the run's tracking.uri carried a password (masked in index.json): set tracking.uri=...")
    return load_config(cfg), OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _existing_run(client: Any, experiment: str, record: Mapping[str, Any], run_dir: str) -> Optional[Any]:
    """The MLflow run this run folder already has at this URI: the pipeline's own (tracking.json), else one a
    previous `log` created (tag run_folder); None."""
    run_id = record.get("run_id")
    if run_id:
        try:
            return client.get_run(run_id)
        except Exception:  # not on this server: look for it by its folder
            pass
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.{RUN_FOLDER_TAG} = '{run_dir}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def log_run_folder(run_dir: str, overrides: Sequence[str] = ()) -> str:
    """Log `run_dir` to MLflow (see the module docstring); the MLflow run id."""
    try:
        index = read_index(run_dir)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    config, plain = config_from_index(index, run_dir, overrides)
    record_path = storage.join(run_dir, TRACKING_FILE)
    record = storage.read_json(record_path) if storage.exists(record_path) else {}
    log_file = os.path.join(run_dir, "run.log") if not storage.is_s3(run_dir) else None
    tracker = Tracker(config, plain, log_file if log_file and os.path.isfile(log_file) else None)

    mlflow = import_mlflow()

    bound_http_retries()
    check_uri(tracker.uri)  # a server that does not answer: exit 2 with the fix, nothing half-logged
    mlflow.set_tracking_uri(tracker.uri)
    client = mlflow.tracking.MlflowClient(tracker.uri)
    existing = _existing_run(client, config.tracking.experiment, record, run_dir)
    missing: Optional[List[str]] = None  # None: every stage
    if existing is not None:
        tag = existing.data.tags.get(INCOMPLETE_TAG)
        if not tag and existing.info.status != "RUNNING":
            log.info("already logged: MLflow run %s (%s) holds this run folder completely", existing.info.run_id,
                     existing.info.status)
            tracker.run_id = existing.info.run_id
            _write_record(tracker, record, existing)
            return existing.info.run_id
        missing = tag.split(",") if tag else list((record.get(INCOMPLETE_TAG) or {}).keys())
    tracker.start(run_id=existing.info.run_id if existing is not None else None)
    if tracker.offline:
        raise TrackingIncomplete(f"nothing logged: {tracker.offline}")
    for stage in stages.STAGE_ORDER:
        entry = index["stages"].get(stage)
        if entry is None:
            continue
        manifest = storage.read_json(storage.join(entry["location"], MANIFEST)) if storage.exists(
            storage.join(entry["location"], MANIFEST)) else {}
        metrics = dict(manifest.get("metrics", {}), **({"cached": 1} if entry.get("reused") else {}))
        if missing is not None and stage not in missing:
            tracker.already_logged(stage, metrics, entry["location"])
            continue
        tracker.stage_finished(stage, float(manifest.get("seconds", 0.0)), metrics, entry["location"])
    ended = record.get("outcome") or {}
    status, tags = (ended["status"], ended["tags"]) if ended else outcome(None)
    tracker.end(status, {**tags, "logged_by": "kon_ray.tracking.log"})
    if tracker.incomplete:
        raise TrackingIncomplete(tracker.repair_hint())
    log.info("logged %s to MLflow run %s (%s)", run_dir, tracker.run_id, redact_text(tracker.uri))
    return str(tracker.run_id)


def _write_record(tracker: Any, record: Mapping[str, Any], run: Any) -> None:
    """tracking.json names the run that now holds the folder (a no-op log still repairs a stale record)."""
    updated = dict(record, uri=redact_text(tracker.uri), run_id=run.info.run_id, offline=None,
                   **{INCOMPLETE_TAG: {}})
    storage.write_json(storage.join(tracker.config.output_dir, TRACKING_FILE), updated)


def main(argv: Optional[Sequence[str]] = None) -> int:

    console = logging.StreamHandler(sys.stderr)  # as the Hydra commands print: only kon_ray's lines
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    console.addFilter(OnlyKonRay())
    logging.getLogger().addHandler(console)
    logging.getLogger().setLevel(logging.INFO)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[0] + "\n\n" + USAGE)
        return 0 if arguments else 2

    def work() -> int:
        run_dir, overrides = parse_arguments(arguments)
        log_run_folder(run_dir, overrides)
        return 0

    return guarded(work)


if __name__ == "__main__":
    sys.exit(main())
