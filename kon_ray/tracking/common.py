"""What every module that talks to MLflow shares: importing it quietly, a local store made safe to open from several
processes at once (`prepare_store`), the code's git state, an error as the one line a run's `error` tag holds, and
the environment variable that makes a sweep's jobs children of its parent run.

The tracker (kon_ray/tracking/tracker.py), the sweep callback (kon_ray/tracking/sweep.py), the model registry
look-ups and the drift stage all import these from here; nothing here imports any of them.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Dict

import kon_ray
from kon_ray.errors import KonError, first_line

# set by the sweep callback (on_multirun_start) for the jobs of a multirun: their runs start as its children
PARENT_RUN_ENV = "KON_MLFLOW_PARENT_RUN_ID"
MAX_ERROR_TAG = 1000  # characters of an error kept in a run's `error` tag

_REPO = Path(kon_ray.__file__).resolve().parent.parent


def import_mlflow() -> ModuleType:
    """Import MLflow with its terminal chatter off: no "View run at" lines, INFO logs dropped, its warnings
    routed through the root logger (terminal and the run's log file) like kon_ray's own."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import mlflow

    for name in ("mlflow", "alembic", "sqlalchemy.engine", "huey"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.WARNING)
    headers = logging.getLogger("mlflow.tracking.request_header.registry")
    if not any(isinstance(f, _PluginHeaderNoise) for f in headers.filters):
        headers.addFilter(_PluginHeaderNoise())
    return mlflow


def prepare_store(uri: str) -> None:
    """Create (or migrate) a `sqlite:///FILE` store's tables once, whatever number of processes open it together.

    MLflow's sqlite store creates its tables when it finds them missing, without a lock: two runs (or sweep trials)
    started together on a fresh file both try, and all but one fail (`table experiments already exists`, `duplicate
    column name`, an alembic revision mismatch). Here the first process holds an exclusive lock (a file in the
    temporary folder keyed by the database's path, as MLflow's own `_safe_initialize_tables` does for its job store)
    while it opens the tracking and registry stores; the others wait, then find the tables complete. MLflow keeps
    each store per process, so the later calls in this process reuse them. Call it before any other MLflow call on
    `uri` (a resolved URI, kon_ray/tracking/uri.py); other stores (servers, ARNs) are left alone."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return
    path = os.path.realpath(uri[len("sqlite:///"):])
    key = hashlib.sha256(path.encode()).hexdigest()[:16]
    mlflow = import_mlflow()
    with open(os.path.join(tempfile.gettempdir(), f"kon_ray-store-{key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        client = mlflow.tracking.MlflowClient(uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # the tracking store: creates, migrates, adds "Default"
        client.search_registered_models(max_results=1)  # the registry store checks the same tables


class _PluginHeaderNoise(logging.Filter):
    """sagemaker-mlflow's request header provider parses every tracking URI as an ARN, so with any other URI each
    request logs "Encountered unexpected error during resolving request headers: list index out of range"
    (aws/sagemaker-mlflow#15, open); no header is lost (the plugin adds one for ARNs only, which kon_ray checks
    before use: tracking/uri.py). Only that line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("resolving request headers" in message and "list index out of range" in message)


def git_state() -> Dict[str, str]:
    """{"git.commit", "git.dirty"} of the code being run, {} outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(dirty).lower(), "mlflow.source.git.commit": commit}


def one_line(exc: BaseException) -> str:
    """An error as a run's `error` tag says it: `interrupted` for Ctrl-C, `<kind>: <message>` for a user error
    (`data error: ...`), else `<Type>: <first line of the message>` (the type alone without a message)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, KonError):
        return f"{exc.kind}: {exc}"[:MAX_ERROR_TAG]
    if not str(exc).strip():
        return type(exc).__name__
    return f"{type(exc).__name__}: {first_line(exc, MAX_ERROR_TAG)}"[:MAX_ERROR_TAG]
