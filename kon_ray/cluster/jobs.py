"""Submitting a run to a running Ray cluster as a Ray Job (the Jobs API on the head's dashboard port, 8265).

The project folder travels as the job's `working_dir` (without data, outputs, virtual environments, git and
infrastructure state); the cluster's nodes are expected to run the project image, so the locked dependencies are
already installed (`cluster.runtime_env_pip=true` installs requirements.lock in the job instead: slow). The job
runs `python -m kon_ray.run` with the user's overrides plus `cluster.kind=local cluster.address=auto`, so it
joins the cluster's Ray instead of submitting again; paths are made absolute because the job's current folder is
its own copy of the working_dir. Ray's token authentication, when enabled, is handled by the Jobs SDK itself
(RAY_AUTH_TOKEN or the token file).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

from kon_ray import storage
from kon_ray.config import CONF_DIR, KonConfig
from kon_ray.errors import ClusterError, ConfigError

log = logging.getLogger("kon_ray")

PROJECT_DIR = CONF_DIR.parent

# Never uploaded with the job: environments, data, run outputs, tracking stores, git, infra state, caches.
WORKING_DIR_EXCLUDES = [
    ".venv/",
    ".venv-tools/",
    ".git/",
    "data/",
    "outputs/",
    "multirun/",
    "mlruns/",
    "mlartifacts/",
    "mlflow.db",
    ".kon_cache/",
    "infra/",
    "*.tfstate*",
    ".env",
    "**/__pycache__/",
    ".pytest_cache/",
    "*.egg-info/",
]

# Not secrets: where S3/MLflow live. Credentials are never forwarded; the cluster's nodes use their own AWS chain.
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "MLFLOW_TRACKING_URI")

# Overrides that the job must not inherit: it runs the pipeline itself, on the cluster's Ray, with the paths below.
_REPLACED_KEYS = ("cluster.kind", "cluster.address", "output_dir", "dataset.path", "cluster.storage_path",
                  "hydra.run.dir", "hydra.sweep.dir")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_overrides(overrides: Sequence[str], config: KonConfig, *, require_shared: bool = False) -> List[str]:
    """The job's `python -m kon_ray.run` overrides: the user's, minus what must change on the cluster, plus the
    absolute (or s3://) data and output paths and the storage path the job will use."""
    data = config.dataset.path
    out = config.output_dir
    if require_shared:
        for key, value in (("dataset.path", data), ("output_dir", out)):
            if not storage.is_s3(value):
                raise ConfigError(
                    f"{key} is {value!r}, a local path, but cluster={config.cluster.kind} runs on other machines:"
                    f" set {key}=s3://BUCKET/PREFIX"
                )
    data = data if storage.is_s3(data) else os.path.abspath(data)
    out = out if storage.is_s3(out) else os.path.abspath(out)
    storage_path = config.cluster.storage_path or storage.join(out, "ray_train")
    if not storage.is_s3(storage_path):
        storage_path = os.path.abspath(storage_path)
    kept = [o for o in overrides if _key(o) not in _REPLACED_KEYS]
    added = [
        "cluster.kind=local",
        "cluster.address=auto",
        f"dataset.path={_quote(data)}",
        f"output_dir={_quote(out)}",
        f"cluster.storage_path={_quote(storage_path)}",
    ]
    if not storage.is_s3(out):
        added.append(f"hydra.run.dir={_quote(out)}")  # Hydra's .hydra/ and log file go into the run folder
    return kept + added


def _quote(value: str) -> str:
    """A Hydra override value, quoted so that ':' '/' '=' and spaces are taken literally."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def entrypoint(overrides: Sequence[str]) -> str:
    return shlex.join(["python", "-m", "kon_ray.run", *overrides])


def runtime_env(config: KonConfig, environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    environ = os.environ if environ is None else environ
    env: Dict[str, Any] = {
        "working_dir": str(PROJECT_DIR),
        "excludes": list(WORKING_DIR_EXCLUDES),
        "env_vars": {name: environ[name] for name in FORWARDED_ENV if environ.get(name)},
    }
    if config.cluster.runtime_env_pip:
        env["pip"] = str(PROJECT_DIR / "requirements.lock")
    return env


@dataclass
class JobOutcome:
    status: str
    exit_code: Optional[int] = None
    message: str = ""
    logs_streamed: bool = field(default=False)


def connect(address: str) -> Any:
    """A JobSubmissionClient for `address`, or a ClusterError saying how to fix the address."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError, requests errors: all mean "not reachable"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray Jobs API at {address} ({reason[:200]}): check cluster.address (the head's"
            " dashboard port, 8265; the head needs `ray start --head --include-dashboard=true`)"
        ) from None


def submit_and_wait(
    client: Any,
    entry: str,
    env: Dict[str, Any],
    *,
    timeout_s: Optional[float] = None,
    out: Optional[TextIO] = None,  # default: the terminal (kon_ray.terminal.result_stream)
    poll_s: float = 1.0,
    metadata: Optional[Dict[str, str]] = None,
) -> int:
    """Submit, stream the logs, wait; return the run's exit code (Ctrl-C stops the job and returns 130)."""
    try:
        job_id = client.submit_job(entrypoint=entry, runtime_env=env, metadata=metadata or {})
    except Exception as exc:
        raise ClusterError(f"the Ray cluster refused the job: {_first_line(exc)}") from None
    log.info("submitted Ray job %s; following its logs (Ctrl-C stops it)", job_id)
    try:
        outcome = _follow(client, job_id, out, timeout_s, poll_s)
    except KeyboardInterrupt:
        _stop(client, job_id)
        log.error("interrupted: stopped Ray job %s", job_id)
        return 130
    return exit_code(job_id, outcome)


def exit_code(job_id: str, outcome: JobOutcome) -> int:
    """SUCCEEDED -> 0; FAILED with the driver's exit code -> that code (kon_ray's documented codes); else 5."""
    if outcome.status == "SUCCEEDED":
        log.info("Ray job %s succeeded", job_id)
        return 0
    if outcome.status == "FAILED" and outcome.exit_code:
        log.error("Ray job %s failed with exit code %d (its log above says why)", job_id, outcome.exit_code)
        return outcome.exit_code
    message = _one_line(outcome.message) or "no message"
    raise ClusterError(f"Ray job {job_id} ended {outcome.status}: {message[:500]}")


def _follow(client: Any, job_id: str, out: Optional[TextIO], timeout_s: Optional[float], poll_s: float) -> JobOutcome:
    from kon_ray.terminal import result_stream

    out = out or result_stream()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    async def _tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    streamed = False
    try:
        asyncio.run(asyncio.wait_for(_tail(), timeout_s))
        streamed = True
    except (asyncio.TimeoutError, TimeoutError):
        _stop(client, job_id)
        raise ClusterError(
            f"Ray job {job_id} ran longer than cluster.job_timeout_s={timeout_s:g} and was stopped"
        ) from None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the log stream broke (proxy, network): keep following the status instead
        log.warning("lost the log stream of Ray job %s (%s); polling its status", job_id, _first_line(exc))
    while True:
        info = client.get_job_info(job_id)
        status = str(getattr(info.status, "value", info.status))
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return JobOutcome(status, getattr(info, "driver_exit_code", None), info.message or "", streamed)
        if deadline is not None and time.monotonic() > deadline:
            _stop(client, job_id)
            raise ClusterError(f"Ray job {job_id} ran longer than cluster.job_timeout_s={timeout_s:g} and was stopped")
        time.sleep(poll_s)


def _stop(client: Any, job_id: str) -> None:
    try:
        client.stop_job(job_id)
    except Exception as exc:
        log.error("could not stop Ray job %s (%s): stop it with `ray job stop %s`", job_id, _first_line(exc), job_id)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def submit_run(
    config: KonConfig,
    overrides: Sequence[str],
    address: str,
    *,
    require_shared: bool = False,
    connect_fn: Callable[[str], Any] = connect,
    out: Optional[TextIO] = None,  # default: the terminal (kon_ray.terminal.result_stream)
) -> int:
    """The whole Jobs path for cluster=ray (and cluster=ec2 once its head is up)."""
    job_args = job_overrides(overrides, config, require_shared=require_shared)
    if not storage.is_s3(job_args_value(job_args, "dataset.path")):
        log.warning(
            "dataset.path is a local path: it must exist at the same place on the cluster's nodes"
            " (use s3:// for a remote cluster)"
        )
    client = connect_fn(address)
    return submit_and_wait(
        client,
        entrypoint(job_args),
        runtime_env(config),
        timeout_s=config.cluster.job_timeout_s,
        out=out,
        metadata={"kon_ray_dataset": config.dataset.name},
    )


def job_args_value(overrides: Sequence[str], key: str) -> str:
    """The (unquoted) value of the last `key=...` in overrides."""
    value = ""
    for override in overrides:
        if _key(override) == key:
            value = override.split("=", 1)[1]
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return value
