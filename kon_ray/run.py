"""`python -m kon_ray.run +dataset=POLA [overrides]`: run the Kon pipeline.

A thin edge: compose and validate the config (before Ray starts), start or join Ray, run the pipeline, and turn
user errors into one line and a documented exit code (kon_ray/errors.py). Tests call `main(cfg)` directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Dict, Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from kon_ray import stages, storage
from kon_ray.cli import EXIT_CODES, Interrupted, guarded, hydra_cli, in_multirun, log_file, started_work
from kon_ray.cluster.config import LocalCluster
from kon_ray.cluster.jobs import leave_ray_working_dir
from kon_ray.cluster.remote import submit
from kon_ray.config import KonConfig, dataset_choices, load_config, register_configs, to_plain
from kon_ray.context import RunContext
from kon_ray.errors import TrackingIncomplete
from kon_ray.execution import user_errors
from kon_ray.ingest import check_footers, fix_command
from kon_ray.run_index import copy_run_files
from kon_ray.secrets import MASK, install_log_redaction, redact, redact_text, secret_values
from kon_ray.storage import check_writable
from kon_ray.tracking.sweep import record_job

log = logging.getLogger("kon_ray.run")  # the module's name, also when it runs as __main__ (python -m)


def run(
    config: KonConfig, plain: Dict[str, Any], start_ray: Optional[Callable[[], None]] = None
) -> Dict[str, Dict[str, Any]]:
    """Run the pipeline on an already started Ray, tracked in MLflow unless tracking=off; return each stage's
    metrics. The MLflow run always ends, with the status the outcome deserves (kon_ray/tracking/tracker.py)."""
    # deferred: the pipeline brings Ray's stages, xgboost and SciPy; --help and config errors stay fast
    from kon_ray.pipeline import run_pipeline

    ctx = RunContext(config=config, plain=plain, run_dir=config.output_dir)
    tracker = None
    try:
        with _tracking(config, plain) as tracker:
            # Ctrl-C however Ray wrapped it is a KeyboardInterrupt by the time the tracker sees it (MLflow: KILLED)
            with user_errors():
                results = run_pipeline(ctx, tracker, start_ray)
    except BaseException as exc:
        _record_sweep_job({}, tracker, exc)
        if isinstance(exc, KeyboardInterrupt):  # the MLflow run is KILLED by now; the line says what is kept
            raise Interrupted(interruption_line(config)) from exc
        raise
    finally:
        _keep_run_files(config.output_dir)
    _record_sweep_job(results, tracker, None)
    log.info("run finished: outputs in %s", config.output_dir)
    if tracker is not None and (tracker.incomplete or tracker.offline):
        # never silent: the outputs are there, the record is not; the last line says so and how to repair it
        raise TrackingIncomplete(tracker.repair_hint())
    return results


def _keep_run_files(run_dir: str) -> None:
    """A run folder on S3 gets the run's log and .hydra/ (kon_ray/run_index.py); a failure to copy is said, not
    raised over the run's own outcome."""

    try:
        hydra_dir: Optional[str] = os.path.join(HydraConfig.get().runtime.output_dir, ".hydra")
    except ValueError:
        hydra_dir = None  # not running under Hydra (tests call main directly)
    try:
        copy_run_files(run_dir, log_file(), hydra_dir)
    except Exception as exc:  # noqa: BLE001  (the run's own error, if any, is the one to report)
        log.warning("could not copy run.log and .hydra/ to %s: %s", run_dir, exc)


def interruption_line(config: KonConfig) -> str:
    """What Ctrl-C stopped: the first chosen stage the run folder has no link for (the pipeline links each stage
    there once it is published or reused), and the stages before it, which stay published for the next run."""

    chosen = [stage for stage in stages.STAGE_ORDER if stage in config.stages]
    kept = []
    for stage in chosen:
        link = storage.join(config.output_dir, stages.stage(stage).folder)
        if not (os.path.lexists(link) if not storage.is_s3(link) else storage.exists(f"{link}.json")):
            break
        kept.append(stage)
    if len(kept) == len(chosen):
        return f"interrupted after its last stage ({chosen[-1]}): every stage is published"
    stopped = chosen[len(kept)]
    if not kept:
        return f"interrupted in stage {stopped}: nothing was published"
    return (f"interrupted in stage {stopped}: nothing of it was published; the stages before it ({', '.join(kept)})"
            " are, and running the same command again reuses them")


def _tracking(config: KonConfig, plain: Dict[str, Any]):
    """The MLflow run around the pipeline, or nothing at all (MLflow not even imported) with tracking=off."""
    if not config.tracking.enabled:
        return contextlib.nullcontext(None)
    # deferred: MLflow only with tracking on
    from kon_ray.tracking.tracker import tracked_run

    return tracked_run(config, plain, log_file=log_file())


def _record_sweep_job(results: Dict[str, Dict[str, Any]], tracker: Any, error: BaseException | None) -> None:
    """In a Hydra multirun, hand this job's metrics to the sweep summary (kon_ray/tracking/sweep.py)."""

    record_job(results, getattr(tracker, "run_id", None), error)


def main(cfg: DictConfig) -> int:
    """Validate, start Ray (lazily), run; return the exit code."""
    return guarded(lambda: _main(cfg))


def _main(cfg: DictConfig) -> int:
    _default_cache_dir(cfg)
    config = load_config(cfg)
    plain = to_plain(cfg)
    # secrets may also sit in Hydra's own config (hydra.job.env_set, the recorded overrides)
    everything = {"config": plain, "hydra": _hydra_plain()}
    install_log_redaction(everything)
    _redact_hydra_dumps(plain, secret_values(everything))
    cluster = config.cluster
    if not isinstance(cluster, LocalCluster):  # ray, ec2, sagemaker: the run goes to the cluster

        started_work()
        return submit(config, _overrides())
    # deferred: Ray only once the config is valid (and tests replace local.init_local_ray)
    from kon_ray.cluster.local import init_local_ray

    check_writable(config.output_dir, "output_dir")
    if config.cache_dir:
        check_writable(config.cache_dir, "cache_dir")
    _check_data(config)
    started_work()
    run(config, plain, start_ray=lambda: init_local_ray(cluster))
    return 0


def _check_data(config: KonConfig) -> None:
    """Before the run starts (no run folder kept, no MLflow run, no Ray): the data the ingest stage will read, from
    the Parquet footers alone (missing folder, not Parquet, a missing or mistyped column, no rows). Ingest checks
    the same and the ids again when it runs; a run without ingest reads its published output instead."""
    if "ingest" not in config.stages:
        return

    dataset = config.dataset
    check_footers(dataset.path, dict(dataset.columns), fix_command(dataset))


def _default_cache_dir(cfg: DictConfig) -> None:
    """`cache_dir: null` under the command: one cache per dataset, `.cache` beside the run folders of single runs
    (`outputs/<dataset>/.cache` by default), for a single run and every job of a sweep alike, so a sweep reuses
    what a single run published and vice versa. A run folder chosen with `output_dir=` (another disk, s3://)
    keeps its cache beside it (kon_ray/pipeline.py cache_root); so do direct calls of `main` (tests)."""
    if cfg.get("cache_dir") is not None or not in_multirun():
        return  # a single run's folder is hydra.run.dir: cache_root puts the cache beside it already
    hydra = HydraConfig.get()
    if os.path.abspath(str(cfg.output_dir)) != os.path.abspath(hydra.runtime.output_dir):
        return  # output_dir= given: its cache goes with it
    shared = os.path.join(os.path.dirname(os.path.abspath(str(hydra.run.dir))), ".cache")
    with open_dict(cfg):
        cfg.cache_dir = shared


def _hydra_plain() -> Dict[str, Any]:
    try:
        return dict(OmegaConf.to_container(HydraConfig.get(), resolve=False))  # type: ignore[arg-type]
    except ValueError:
        return {}  # not running under Hydra (tests call main directly)


def _redact_hydra_dumps(plain: Dict[str, Any], values: set[str]) -> None:
    """Hydra writes the composed config, its own config and the overrides to <run>/.hydra/ verbatim; mask every
    secret value in them (`values`: from the config and from Hydra's config)."""
    try:
        hydra_dir = os.path.join(HydraConfig.get().runtime.output_dir, ".hydra")
    except ValueError:
        return  # not running under Hydra (tests call main directly)
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        path = os.path.join(hydra_dir, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if name == "config.yaml":
            clean = OmegaConf.to_yaml(OmegaConf.create(redact(plain)))
        else:
            clean = redact_text(text)
            for value in values:
                clean = clean.replace(value, MASK)
        if clean != text:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(clean)


def _overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def usage() -> str:
    """`python -m kon_ray.run --help`."""

    datasets = ", ".join(dataset_choices())
    return f"""usage: python -m kon_ray.run +dataset=NAME [KEY=VALUE ...]
       python -m kon_ray.run -m +dataset=NAME model.max_depth=4,6 ...     a sweep: one job per combination

Runs the Kon pipeline, ingest -> preprocess -> segment -> drift -> train -> infer, on a local Ray (default).

required:
  +dataset=NAME                 one of {datasets}; its data is read from data/NAME, which
                                python -m kon_ray.synth +dataset=NAME generates

common overrides:
  debug=tiny                    small models and a small Ray (the data is not shrunk: generate it with debug=tiny)
  stages=[ingest,preprocess]    a subset of the stages, run in pipeline order
  dataset.path=PATH             the data: a Parquet file or folder, local or s3://
  cluster=local|ray|ec2|sagemaker   where Ray runs; e.g. cluster.num_cpus=8
  tracking=off                  no MLflow (default: ./mlflow.db; tracking.uri=URI for a server)
  reuse=false                   recompute every stage instead of reusing the cache
  model.max_depth=4 ...         any key: --cfg job prints the composed config, every key with its value

where things go:
  outputs/NAME/<date>_<time>/   the run folder: run.log (all the terminal showed, Ray's and MLflow's messages,
                                tracebacks), .hydra/ (the config), a folder per stage
  outputs/NAME/.cache/          the stages' outputs, reused by the next run with the same inputs
  ./mlflow.db                   the MLflow runs: mlflow ui --backend-store-uri sqlite:///mlflow.db

other commands (each has --help): python -m kon_ray.synth, python -m kon_ray.drift, python -m kon_ray.drift.history
{EXIT_CODES}. Hydra's own options: --hydra-help. More: README.md"""


cli = hydra_cli("config", main, register_configs, schema=KonConfig, usage=usage)


if __name__ == "__main__":

    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    leave_ray_working_dir()  # in a Ray Job's driver: a folder Ray cannot replace under it (kon_ray/cluster/jobs.py)
    cli()
