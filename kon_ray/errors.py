"""The errors a user can cause, each with its documented exit code.

`kon_ray.run.main` maps these to one line on stderr and the exit code below; anything else is a bug and exits 1
with the traceback kept in the run's log file.

| code | meaning                                                       |
|------|---------------------------------------------------------------|
| 0    | success                                                       |
| 1    | unexpected failure (a bug, or an infrastructure fault)        |
| 2    | configuration error (bad key or value, missing dataset)       |
| 3    | data error (unreadable file, schema mismatch, empty, dups)    |
| 4    | stopped by the drift gate (`drift.fail_on_drift=true`)        |
| 5    | cluster / job submission error (remote job failed or refused), |
|      | or storage: S3 past its retry budget, a full disk             |
| 6    | outputs published, but the MLflow record is incomplete        |
| 130  | interrupted (Ctrl-C)                                          |
"""

from __future__ import annotations


class KonError(Exception):
    """Base class for errors caused by the user's config, data or environment."""

    exit_code = 1
    kind = "error"

    def __str__(self) -> str:  # one line, always
        return " ".join(super().__str__().split())


class ConfigError(KonError):
    exit_code = 2
    kind = "config error"


class DataError(KonError):
    exit_code = 3
    kind = "data error"


class DriftGateError(KonError):
    exit_code = 4
    kind = "drift gate"


class ClusterError(KonError):
    exit_code = 5
    kind = "cluster error"


class TrackingIncomplete(KonError):
    """The pipeline finished and published its outputs, but part of its MLflow record is missing (the server went
    away, a request was refused): `python -m kon_ray.tracking.log RUN_FOLDER` logs it later."""

    exit_code = 6
    kind = "tracking incomplete"


class StorageError(ClusterError):
    """The store under the run folder or the cache failed, not the user's data: S3 past its retry budget (throttled,
    connections dropped), a full disk. Exit 5, like the other infrastructure faults; the line names the object."""

    kind = "storage error"


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line for a log or error message: its message's first line, else its type."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
