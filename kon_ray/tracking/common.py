"""What every module that talks to MLflow shares: importing it quietly, the code's git state, an error as the one
line a run's `error` tag holds, and the environment variable that makes a sweep's jobs children of its parent run.

The tracker (kon_ray/tracking/tracker.py), the sweep callback (kon_ray/tracking/sweep.py), the model registry
look-ups and the drift stage all import these from here; nothing here imports any of them.
"""

from __future__ import annotations

import logging
import os
import subprocess
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
