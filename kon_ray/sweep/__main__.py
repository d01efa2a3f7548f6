"""`python -m kon_ray.sweep +dataset=POLA model.max_depth=4,6 model.eta=0.05,0.1`: a sweep whose trials run at once
on Ray Tune, hopeless ones stopped early (README "Sweeps").

    python -m kon_ray.sweep +dataset=POLA model.max_depth=4,6,8 model.eta=0.05,0.1          # a grid: 6 points
    python -m kon_ray.sweep +dataset=POLA sweep.search=optuna sweep.trials=40 \\
        'model.eta=interval(0.01,0.3)' 'model.max_depth=range(3,10)'                           # a seeded TPE search

Everything is checked before anything starts (an unknown key, a range on a key that is not numeric, a value a
model cannot take: exit 2 with one line). Then the stages before training run once (or are reused from the cache),
each population's trials run on Ray Tune, and the sweep prints per population the best trial's validation mlogloss
and the `python -m kon_ray.run` command line that reproduces it. Exit codes as kon_ray.run's; 1 when a trial
failed (the others still ran; each failed trial's one line is printed). With `cluster=ray|ec2|sagemaker` the checks
run here and the whole sweep runs as one job on the cluster (kon_ray/sweep/job.py), this command exiting with its
code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import logging
import os
import shlex
import signal
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from kon_ray import storage
from kon_ray.cli import _preflight, guarded, started_work
from kon_ray.cluster.config import LocalCluster, SageMakerCluster
from kon_ray.cluster.jobs import leave_ray_working_dir
from kon_ray.cluster.sagemaker import job_name as sagemaker_job_name
from kon_ray.config import CONF_DIR, KonConfig, load_config, no_dataset_message, register_configs, to_plain
from kon_ray.errors import ConfigError
from kon_ray.storage import check_writable
from kon_ray.sweep.config import SweepConfig
from kon_ray.sweep.job import default_sweep_dir, submit_sweep
from kon_ray.sweep.space import check_space, grid, model_for, parse_command_line
from kon_ray.sweep.summary import format_summary
from kon_ray.sweep.track import open_tracker, parent_params
from kon_ray.terminal import KonTerminal, result_stream

log = logging.getLogger("kon_ray.sweep")

LOG_FILE = "sweep.log"
LOG_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
FAIL_ENV = "KON_SWEEP_FAIL_POINT"  # tests: a JSON point whose trials raise (a trial that fails mid-sweep)
DIE_ONCE_ENV = "KON_SWEEP_DIE_ONCE_POINT"  # tests: a JSON point whose trial's process dies once (then is retried)


def load_sweep_config(values: Dict[str, Any]) -> SweepConfig:
    """sweep.* from the command line, checked against SweepConfig (an unknown key names the closest one)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException


    names = [f.name for f in dataclasses.fields(SweepConfig)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f": did you mean sweep.{close[0]}?" if close else f" (sweep.* keys: {', '.join(names)})"
            raise ConfigError(f"unknown config key sweep.{key}{hint}")
    schema = OmegaConf.structured(SweepConfig)
    try:
        merged = OmegaConf.merge(schema, OmegaConf.create(dict(values)))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise ConfigError(f"sweep.{key}: {str(exc).splitlines()[0]}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def compose(fixed: Sequence[str], sweep_dir: str):
    """The run's config from the unswept overrides, as kon_ray.run composes it; output under the sweep folder."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException


    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(fixed))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    with open_dict(cfg):
        cfg.output_dir = storage.join(sweep_dir, "shared")
        if cfg.get("cache_dir") is None and storage.is_s3(sweep_dir):  # beside it, as a run folder's on S3
            cfg.cache_dir = storage.join(sweep_dir.rstrip("/").rsplit("/", 1)[0], ".cache")
        elif cfg.get("cache_dir") is None:  # the single runs' cache: a sweep and a run reuse each other's stages
            cfg.cache_dir = os.path.join("outputs", str(cfg.dataset.name), ".cache")
        if "://" not in str(cfg.cache_dir):  # trials run in Ray Tune's trial folders: no relative paths
            cfg.cache_dir = os.path.abspath(str(cfg.cache_dir))
    return cfg


def main(argv: Optional[List[str]] = None) -> int:

    args = list(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: _main(args))


def _main(args: List[str]) -> int:
    import json


    flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun")]
    if flags:
        raise ConfigError(f"{flags[0]}: python -m kon_ray.sweep takes overrides only (key=value)")
    overrides = [a for a in args if not a.startswith("-")]
    command = parse_command_line(overrides)
    # every key but sweep.*: the same check as kon_ray.run's (unknown key -> the closest one, exit 2)
    _preflight("config", [o for o in overrides if not o.startswith("sweep.")] + ["-m"], KonConfig)
    sweep = load_sweep_config(command.sweep)
    if not any(o.startswith("+dataset=") or o.startswith("dataset=") for o in command.fixed):
        raise ConfigError(no_dataset_message())
    stamp = f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}"
    dataset_name = next(o.split("=", 1)[1] for o in command.fixed if o.lstrip("+").startswith("dataset="))
    sweep_dir = sweep.dir if sweep.dir and storage.is_s3(sweep.dir) else os.path.abspath(
        sweep.dir or os.path.join("multirun", dataset_name, stamp))
    cfg = compose(command.fixed, sweep_dir)
    config = load_config(cfg)
    job_name = None
    if isinstance(config.cluster, SageMakerCluster):  # the training job's name, and the sweep folder on S3
        job_name = sagemaker_job_name(config.cluster.job_name_prefix, dataset_name)
        if not sweep.dir:
            sweep_dir = default_sweep_dir(config.cluster, job_name)
            cfg = compose(command.fixed, sweep_dir)
            config = load_config(cfg)
    plain = to_plain(cfg)

    check_space(command.dimensions, sweep, config.model)
    points = grid(command.dimensions) if sweep.search == "grid" else None
    for point in points or []:
        model_for(config.model, point)  # a value no model takes: exit 2 now, not in a trial
    if not isinstance(config.cluster, LocalCluster):  # checked here, run there: the whole sweep as one job
        started_work()
        _console()
        return submit_sweep(config, overrides, command.fixed, sweep_dir, job_name)
    faults = {name: json.loads(os.environ[env]) for name, env in (("raise", FAIL_ENV), ("die_once", DIE_ONCE_ENV))
              if os.environ.get(env)}
    return _run(config, plain, sweep, command, points, sweep_dir, overrides, faults)


def _run(config, plain, sweep: SweepConfig, command, points, sweep_dir: str, overrides: List[str],
         faults: Dict[str, Any]) -> int:
    # deferred: Ray, Tune and xgboost only once the sweep's config is valid
    from kon_ray.cluster.local import init_local_ray
    from kon_ray.sweep import driver

    log_path = _log_path(sweep_dir)
    handler = _log_to(log_path)
    settings = {**dataclasses.asdict(sweep), "dir": sweep_dir,
                "swept": [d.override for d in command.dimensions],
                "grid_points": len(points) if points is not None else None}
    tracker = None
    try:
        with KonTerminal(log_path):
            check_writable(config.cache_dir, "cache_dir")
            if config.tracking.enabled:

                tracker = open_tracker(config.tracking.uri, config.tracking.experiment, config.dataset.name,
                                       overrides, parent_params(plain, settings))
                log.info("sweep: MLflow parent run %s", tracker.run_id)
            started_work()
            ctx = driver.shared_stages(config, plain, sweep_dir, lambda: init_local_ray(config.cluster))
            inputs = driver.training_inputs(ctx)
            records = driver.run_trials(config, sweep, ctx, inputs, points, command.dimensions, sweep_dir, faults)
            fixed = shlex.split(sweep.submitted_overrides) if sweep.submitted_overrides else command.fixed
            summary, files = driver.finish(records, sweep, fixed, settings, sweep_dir,
                                           f"{config.dataset.name} sweep {os.path.basename(sweep_dir)}")
            driver.write_best_models(config, summary, inputs, ctx, sweep_dir)
            failed = summary["counts"]["FAILED"]
            if tracker is not None:
                ids = tracker.log_trials(summary["trials"], config.dataset.name)
                if config.tracking.register_models and not failed:
                    tracker.register_best(summary, ids, sweep_dir, ctx.stage_dir("preprocess"), config.dataset.name,
                                          config.tracking.input_example_rows)
                elif config.tracking.register_models:  # as a run: only a sweep whose every trial ran registers
                    log.warning("sweep: best models not registered (tracking.register_models): %d trial(s) failed",
                                failed)
                tracker.finish(summary, ids, files, "FAILED" if failed else "FINISHED")
                tracker = None

            print("\n".join(format_summary(summary)), file=result_stream())
            print(f"sweep folder: {sweep_dir}", file=result_stream())
            if failed:
                log.error("%d trial(s) failed (lines above; sweep_summary.json)", failed)
                return 1
            return 0
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; or SIGTERM (`ray job stop`) through Ray's handler, an exit
        if tracker is not None:
            tracker.end("KILLED")
        raise
    except BaseException:
        if tracker is not None:
            tracker.end("FAILED")
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        if storage.is_s3(sweep_dir):
            _upload_log(log_path, sweep_dir)


def _log_path(sweep_dir: str) -> str:
    """Where sweep.log is written as the sweep goes: in the sweep folder, or for one on S3 (which has no append) a
    local file, copied there at the end (`_upload_log`)."""
    if not storage.is_s3(sweep_dir):
        os.makedirs(sweep_dir, exist_ok=True)
        return os.path.join(sweep_dir, LOG_FILE)
    handle, path = tempfile.mkstemp(prefix="kon_sweep_", suffix=".log")
    os.close(handle)
    return path


def _upload_log(local: str, sweep_dir: str) -> None:
    """The local sweep.log to the sweep folder on S3; a failure is said, not raised over the sweep's outcome."""
    try:
        with open(local, encoding="utf-8", errors="replace") as handle:
            storage.write_text(storage.join(sweep_dir, LOG_FILE), handle.read())
        os.remove(local)
    except Exception as exc:  # noqa: BLE001  (the sweep's own error, if any, is the one to report)
        log.warning("could not copy %s to %s: %s", local, sweep_dir, exc)



def _console() -> None:
    """kon_ray's log lines (INFO and up) on the terminal, stderr, once."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(LOG_FORMAT)
        root.addHandler(console)


def _log_to(path: str) -> logging.Handler:
    """kon_ray's log lines on the terminal (stderr) and everything in <sweep dir>/sweep.log."""
    _console()
    handler = logging.FileHandler(path)
    handler.setFormatter(LOG_FORMAT)
    logging.getLogger().addHandler(handler)
    return handler


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    if leave_ray_working_dir() is not None:  # the driver of a sweep submitted as a Ray Job (kon_ray/sweep/job.py)
        # `ray job stop` (the submitter's Ctrl-C) sends SIGTERM: end as on Ctrl-C, the parent run KILLED (once Ray
        # is up, its own handler takes over and exits the driver: `_run` ends the parent run KILLED for that too)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
