"""Where runs are tracked: resolving `tracking.uri`, and checking it before the pipeline starts (no MLflow import).

- `tracking.uri` set: that URI (http(s)://host:port for a server, sqlite:///path, or
  arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME for the SageMaker-managed server infra/ creates,
  `terraform output -raw mlflow_tracking_server_arn`; the `sagemaker-mlflow` plugin in requirements.lock resolves
  it to the region's endpoint and signs every request with SigV4);
- else `$MLFLOW_TRACKING_URI`;
- else `sqlite:///mlflow.db` resolved against the working directory (MLflow 3 deprecates the ./mlruns file store).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from kon_ray.errors import ConfigError


class TrackingUnreachable(ConfigError):
    """No MLflow server answers at an http(s) tracking URI. The drift check and history stop on it (exit 2); a
    pipeline run goes on untracked and says, in its last line, the one command that logs it later."""

DEFAULT_DB = "mlflow.db"
# what the plugin accepts (sagemaker_mlflow/mlflow_sagemaker_helpers.py): partition aws or aws-us-gov, a tracking
# server or an MLflow app
SAGEMAKER_ARN = re.compile(
    r"^arn:aws(-us-gov)?:sagemaker:[a-z0-9-]+:[0-9]{12}:(mlflow-tracking-server|mlflow-app)/[A-Za-z0-9-]+$"
)


def resolve_uri(uri: Optional[str]) -> str:
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    if chosen.startswith("sqlite:///") and not chosen.startswith("sqlite:////"):
        relative = chosen[len("sqlite:///") :]
        if relative != ":memory:":
            chosen = "sqlite:///" + os.path.abspath(relative)
    elif "://" not in chosen and not chosen.startswith("arn:") and chosen not in ("databricks",):
        chosen = "sqlite:///" + os.path.abspath(chosen)  # a bare path: a sqlite file
    return chosen


def is_local_file(uri: str) -> bool:
    """A store that is a file on this machine (sqlite, file:, a bare path): nobody else can write to it."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri and not uri.startswith("arn:")


def check_remote_uri(uri: Optional[str], cluster_kind: str) -> None:
    """A run on a remote cluster tracks to a server: a local-file store is refused before anything is submitted.

    The pipeline's driver runs on the cluster, where this machine's file does not exist (and a Ray job's working
    folder is read-only), so the run would track nowhere; refusing is clearer than logging through the client."""
    resolved = resolve_uri(uri)
    if is_local_file(resolved):
        where = "tracking.uri" if uri else "tracking.uri (null: $MLFLOW_TRACKING_URI, else ./mlflow.db)"
        raise ConfigError(
            f"{where} is {resolved}, a file on this machine, but cluster={cluster_kind} runs the pipeline elsewhere:"
            " set tracking.uri=http(s)://HOST:PORT (an MLflow server the cluster reaches) or"
            " tracking.uri=arn:aws:sagemaker:... , or run with tracking=off"
        )


def is_sagemaker(uri: str) -> bool:
    return uri.startswith(("arn:aws:sagemaker:", "arn:aws-us-gov:sagemaker:"))


def check_uri(uri: str, timeout_s: float = 5.0, untracked: Optional[str] = "run with tracking=off") -> None:
    """Fail early, with the fix, when the tracking target cannot work: the plugin missing, the server down.

    `untracked`: how this command runs without tracking, the last fix offered (the pipeline's `tracking=off`; the
    drift check has no `tracking` group, and leaves tracking.uri out); None when the command cannot."""
    otherwise = f", or {untracked}" if untracked else ""
    if is_sagemaker(uri):
        if not SAGEMAKER_ARN.match(uri):
            raise ConfigError(
                f"tracking.uri {uri} is not a SageMaker MLflow ARN: expected"
                " arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME"
                " (terraform output -raw mlflow_tracking_server_arn in infra/live)"
            )
        if importlib.util.find_spec("sagemaker_mlflow") is None:
            raise ConfigError(
                f"tracking.uri {uri} is a SageMaker MLflow tracking server, which needs the sagemaker-mlflow plugin"
                f" (pinned in requirements.lock): pip install --no-deps -r requirements.lock{otherwise}"
            )
        return
    if uri.startswith(("http://", "https://")):
        health, request = _health_request(uri)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                if response.status != 200:
                    raise urllib.error.URLError(f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # an authenticating proxy in front of the server: let MLflow's auth try
                return
            raise ConfigError(
                f"tracking.uri {uri}: {health} answered HTTP {exc.code}; is it an MLflow server?"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingUnreachable(
                f"tracking.uri {uri}: no MLflow server answers ({reason}); start one (mlflow server --host 127.0.0.1"
                f" --port 5000){', point tracking.uri elsewhere' if untracked else ' or point tracking.uri elsewhere'}"
                f"{otherwise}"
            ) from None


def answers(uri: str, timeout_s: float = 2.0) -> bool:
    """Whether the tracking target answers now: an http(s) server's /health; any other store is assumed to."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        check_uri(uri, timeout_s)
    except TrackingUnreachable:
        return False
    except ConfigError:
        return True  # it answers, with something else: the request that follows will say what
    return True


def bound_http_retries() -> None:
    """MLflow's client retries a failed request 7 times with a backoff factor of 2 (minutes per request) and waits
    120 s for an answer; a run whose server went away would stall at every stage. Unless the user chose otherwise:
    3 retries, factor 1 (about 7 s of waiting), 30 s per request. A server restarted within that budget loses
    nothing; past it, what was missed is recorded (kon_ray/tracking/tracker.py) and can be logged later."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _health_request(uri: str) -> tuple[str, urllib.request.Request]:
    """The server's /health URL (credentials removed, for messages) and a request for it that sends the URL's
    user:password as basic auth, as MLflow's own client (requests) does; urllib would read them as the host."""
    parts = urllib.parse.urlsplit(uri.rstrip("/"))
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    health = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path + "/health", "", ""))
    request = urllib.request.Request(health)
    if parts.username is not None:
        user_pass = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(user_pass.encode()).decode())
    return health, request


def ui_hint(uri: str) -> str:
    """How to look at the runs: the server's address, or the `mlflow ui` command for a local database."""
    if uri.startswith(("http://", "https://")):
        return uri
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri}"
    return uri
