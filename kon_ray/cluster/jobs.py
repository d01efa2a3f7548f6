"""Submitting a run to a running Ray cluster as a Ray Job (the Jobs API on the head's dashboard port, 8265).

What travels with the job is an allowlist (UPLOAD): kon_ray/, conf/, pyproject.toml and requirements.lock, copied
into a fresh folder that becomes the job's `working_dir`; nothing else of the project folder (data, outputs, git,
infra state, virtual environments, stray files) can reach the cluster. The cluster's nodes are expected to run the
project image, so the locked dependencies are already installed (`cluster.runtime_env_pip=true` installs
requirements.lock in the job instead: slow). The job runs `python -m kon_ray.run` with the user's overrides, less
the cluster choice and its keys, plus `cluster=local cluster.address=auto` and the keys every kind shares
(`joined_overrides`), so it joins the cluster's Ray instead of submitting again; paths are made absolute because the
job's current folder is its own copy of the working_dir. A whole sweep goes the same way (`submit_job`): one job
running `python -m kon_ray.sweep`, its command line built by kon_ray/sweep/job.py.

Authentication (kon_ray/cluster/auth.py): the client finds the head's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
cluster.auth_token_file, cluster.auth_token_secret), turns Ray's token mode on for this process (Ray's client
sends no token without RAY_AUTH_MODE=token) and sends it as the Authorization header; a head that refuses it is a
ClusterError (exit 5) naming those sources. No credential travels with the job: not the token (the driver runs on
the head, which holds it), not AWS keys (the nodes use their own AWS chain), not a password in an override, in
tracking.uri or in a forwarded variable (refused before submission: `check_no_secrets`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Union

from kon_ray import storage
from kon_ray.cluster.auth import Token, auth_failure, enable_client_auth, find_token
from kon_ray.cluster.config import Ec2Cluster, RayCluster, carried_overrides, joined_overrides, override_key
from kon_ray.config import CONF_DIR, KonConfig
from kon_ray.errors import ClusterError, ConfigError, first_line
from kon_ray.secrets import URL_PASSWORD, is_secret_key
from kon_ray.terminal import result_stream

log = logging.getLogger(__name__)

PROJECT_DIR = CONF_DIR.parent

# The only project paths uploaded with a job: the package, its config, and what pins its dependencies.
UPLOAD = ("kon_ray", "conf", "pyproject.toml", "requirements.lock")
# Inside those: never build litter, nor a stray local store or secret file someone left there.
UPLOAD_SKIP = ("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "mlflow.db", "*.tfstate*", ".env", ".DS_Store")

# Not secrets: where S3/MLflow live. Credentials are never forwarded; the cluster's nodes use their own AWS chain.
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "MLFLOW_TRACKING_URI")

# The kinds that submit through the Jobs API.
JobsCluster = Union[RayCluster, Ec2Cluster]


def jobs_cluster(config: KonConfig) -> JobsCluster:
    cluster = config.cluster
    if not isinstance(cluster, (RayCluster, Ec2Cluster)):
        raise TypeError(f"a Ray Job is submitted with cluster=ray or ec2, not cluster={cluster.kind}")
    return cluster


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
    kept = carried_overrides(overrides)  # the job runs cluster=local on the cluster's Ray, with the paths below
    added = [
        *joined_overrides(config.cluster),
        f"dataset.path={hydra_quote(data)}",
        f"output_dir={hydra_quote(out)}",
        f"cluster.storage_path={hydra_quote(storage_path)}",
    ]
    if not storage.is_s3(out):
        added.append(f"hydra.run.dir={hydra_quote(out)}")  # Hydra's .hydra/ and log file go into the run folder
    return kept + added


# Ray unpacks a job's working_dir under <temp dir>/session_*/runtime_resources/working_dir_files/_ray_pkg_<hash>/
# and starts the job's driver there. Another node's runtime-env agent that shares the temp folder (several nodes on
# one machine) unpacks the same package again with `overwrite=True`: it deletes the folder and extracts a new one
# (ray/_private/runtime_env/working_dir.py). The driver's current folder is then gone, and everything that asks
# for it fails: os.path.relpath of a relative path, MLflow's log_model (Path.cwd()), Hydra's relative run folder.
RAY_WORKING_DIR_MARK = os.sep + os.path.join("runtime_resources", "working_dir_files") + os.sep


def leave_ray_working_dir() -> Optional[str]:
    """In a Ray Job's driver, move to a folder of its own outside Ray's unpacked package, before Hydra makes the
    run folder (a relative `hydra.run.dir` then lands there, not in a folder Ray may replace); the folder, or None
    when this process does not run in a job's working_dir. The package stays importable: Ray puts it on
    PYTHONPATH by its path, which the re-extracted copy keeps."""
    try:
        here = os.getcwd()
    except FileNotFoundError:  # already gone: nothing relative is worth keeping
        here = RAY_WORKING_DIR_MARK
    if RAY_WORKING_DIR_MARK not in here + os.sep:
        return None
    own = tempfile.mkdtemp(prefix="kon_ray_job_")
    if here != RAY_WORKING_DIR_MARK and here not in sys.path:
        sys.path.insert(0, here)  # python -m put the folder on sys.path as '' or its path: keep it by path
    os.chdir(own)
    return own


def hydra_quote(value: str) -> str:
    """A Hydra override value, quoted so that ':' '/' '=' and spaces are taken literally."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def entrypoint(overrides: Sequence[str], module: str = "kon_ray.run") -> str:
    return shlex.join(["python", "-m", module, *overrides])


def stage_upload(folder: Path, project: Path = PROJECT_DIR) -> Path:
    """Copy the allowlisted paths (UPLOAD) of `project` into `folder`: the job's working_dir."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in UPLOAD:
        source = project / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns(*UPLOAD_SKIP), dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, folder / name)
        else:
            raise ConfigError(f"{source} is missing: the job's upload needs {', '.join(UPLOAD)} in the project folder")
    return folder


def runtime_env(config: KonConfig, environ: Optional[Mapping[str, str]] = None,
                working_dir: Optional[Path] = None) -> Dict[str, Any]:
    """The job's runtime_env: the staged allowlist as its working_dir, only the FORWARDED_ENV variables."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    env: Dict[str, Any] = {
        "working_dir": str(working_dir or PROJECT_DIR),
        "env_vars": {name: source[name] for name in FORWARDED_ENV if source.get(name)},
    }
    if jobs_cluster(config).runtime_env_pip:
        env["pip"] = str((working_dir or PROJECT_DIR) / "requirements.lock")
    return env


def check_no_secrets(overrides: Sequence[str], env_vars: Dict[str, str]) -> None:
    """A job's command line and runtime_env are stored by the head and shown in its dashboard to anyone who may use
    the Jobs API: refuse, before submitting, an override or a forwarded variable that carries a secret."""

    for override in overrides:
        key = override_key(override)
        value = override.split("=", 1)[1] if "=" in override else ""
        if (is_secret_key(key) and value.strip("'\" ") not in ("", "null")) or URL_PASSWORD.search(value):
            raise ConfigError(
                f"the override {key}=... carries a secret, which would travel in clear in the Ray job's command"
                " line: give the cluster's nodes that secret through their environment or image instead"
                " (MLflow: MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD on the nodes)"
            )
    for name, value in env_vars.items():
        if URL_PASSWORD.search(value):
            raise ConfigError(
                f"${name} carries a password, which would travel in clear in the Ray job's environment: drop it"
                " from the URL and give the cluster's nodes the credentials through their own environment"
            )


@dataclass
class JobOutcome:
    status: str
    exit_code: Optional[int] = None
    message: str = ""
    logs_streamed: bool = field(default=False)


def connect(address: str, token: Optional[Token] = None) -> Any:
    """A JobSubmissionClient for `address` sending `token`, or a ClusterError saying how to fix the address or the
    token (the client checks the head's version on creation, so a refused token shows here)."""
    from ray.job_submission import JobSubmissionClient

    enable_client_auth(token)
    try:
        return JobSubmissionClient(address, headers=token.header() if token else None)
    except Exception as exc:  # ConnectionError, RuntimeError, requests errors: all mean "not reachable"
        refused = auth_failure(exc, address, token)
        if refused is not None:
            raise refused from None
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
        refused = auth_failure(exc, getattr(client, "_address", "the head"), None)
        if refused is not None:
            raise refused from None
        raise ClusterError(f"the Ray cluster refused the job: {first_line(exc)}") from None
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


def _follow(client: Any, job_id: str, to: Optional[IO[str]], timeout_s: Optional[float], poll_s: float) -> JobOutcome:

    out = to or result_stream()
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
        log.warning("lost the log stream of Ray job %s (%s); polling its status", job_id, first_line(exc))
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
        log.error("could not stop Ray job %s (%s): stop it with `ray job stop %s`", job_id, first_line(exc), job_id)



def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def submit_run(
    config: KonConfig,
    overrides: Sequence[str],
    address: str,
    *,
    require_shared: bool = False,
    connect_fn: Callable[..., Any] = connect,
    out: Optional[TextIO] = None,  # default: the terminal (kon_ray.terminal.result_stream)
    token: Optional[Token] = None,  # found by the caller (ec2); default: find_token(config.cluster)
) -> int:
    """The whole Jobs path for cluster=ray (and cluster=ec2 once its head is up)."""
    job_args = job_overrides(overrides, config, require_shared=require_shared)
    return submit_job(config, "kon_ray.run", job_args, address, connect_fn=connect_fn, out=out, token=token)


def submit_job(
    config: KonConfig,
    module: str,
    job_args: Sequence[str],
    address: str,
    *,
    connect_fn: Callable[..., Any] = connect,
    out: Optional[TextIO] = None,  # default: the terminal (kon_ray.terminal.result_stream)
    token: Optional[Token] = None,  # default: find_token(config.cluster)
    env_vars: Optional[Mapping[str, str]] = None,  # the job's own, beside the forwarded ones
) -> int:
    """`python -m <module> <job_args>` as one Ray Job (a pipeline run, or a whole sweep: kon_ray/sweep/job.py):
    upload the allowlist, refuse secrets, submit, stream the logs; the job's exit code."""
    if not storage.is_s3(job_args_value(job_args, "dataset.path")):
        log.warning(
            "dataset.path is a local path: it must exist at the same place on the cluster's nodes"
            " (use s3:// for a remote cluster)"
        )
    with tempfile.TemporaryDirectory(prefix="kon-job-") as staging:
        env = runtime_env(config, working_dir=stage_upload(Path(staging) / "kon_ray_job"))
        env["env_vars"].update(env_vars or {})
        check_no_secrets(job_args, env["env_vars"])
        client = connect_fn(address, token if token is not None else find_token(jobs_cluster(config)))
        return submit_and_wait(
            client,
            entrypoint(job_args, module),
            env,
            timeout_s=jobs_cluster(config).job_timeout_s,
            out=out,
            metadata={"kon_ray_dataset": config.dataset.name, "kon_ray_command": module},
        )


def job_args_value(overrides: Sequence[str], key: str) -> str:
    """The (unquoted) value of the last `key=...` in overrides."""
    value = ""
    for override in overrides:
        if override_key(override) == key:
            value = override.split("=", 1)[1]
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return value
