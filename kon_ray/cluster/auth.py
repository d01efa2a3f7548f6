"""Ray's token authentication, for every cluster that is not this machine's (cluster=ray|ec2|sagemaker).

Ray 2.60 semantics (ray/_private/authentication/): a head started by `ray start --head` turns token authentication
on whenever a token is available to it (or RAY_AUTH_MODE=token), and then its Jobs API answers 401 without a token
and 403 with a wrong one. Ray's own client sends the token only when RAY_AUTH_MODE=token is also set in the
client's environment, which is easy to miss; kon_ray finds the token itself and turns token mode on for this
process, so a user needs the token and nothing else.

Where the client's token comes from, first found wins:
1. $RAY_AUTH_TOKEN (the token itself);
2. $RAY_AUTH_TOKEN_PATH (a file holding it);
3. `cluster.auth_token_file` (a file holding it);
4. `cluster.auth_token_secret` (the Secrets Manager secret that infra/ creates and the EC2 / SageMaker nodes read
   at start), fetched with the standard AWS chain.

No token found: the client connects without one (a cluster with authentication off still works), and a head that
wants one is a ClusterError (exit 5) that names these sources. The token never goes into the job's runtime
environment, command line or logs: the job's driver runs on the head, which already holds it.

On the nodes (EC2 start commands, the SageMaker entry), `write_node_token` puts the secret's value in Ray's default
token file (~/.ray/auth_token, mode 0600) before `ray start` with RAY_AUTH_MODE=token.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, MutableMapping, Optional

from kon_ray.errors import ClusterError

DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"
WHERE = (
    "set RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or cluster.auth_token_file to the head's token"
    " (`ray get-auth-token` on the head; on EC2/SageMaker the secret `terraform output -raw ray_token_secret_arn`,"
    " also read through cluster.auth_token_secret)"
)


@dataclass(frozen=True)
class Token:
    source: str  # where it came from, for messages: never the value
    value: str = field(repr=False)

    def header(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def _read_file(path: str, what: str) -> str:
    try:
        value = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ClusterError(f"{what} {path}: cannot read the Ray token ({exc.strerror or exc}); {WHERE}") from None
    if not value:
        raise ClusterError(f"{what} {path} is empty; {WHERE}")
    return value


def find_token(
    cluster: Any,
    environ: Optional[MutableMapping[str, str]] = None,
    fetch_secret: Optional[Callable[[str, Optional[str]], str]] = None,
) -> Optional[Token]:
    """The client's token from the first source that has one (module docstring), or None."""
    environ = os.environ if environ is None else environ
    if environ.get("RAY_AUTH_TOKEN", "").strip():
        return Token("RAY_AUTH_TOKEN", environ["RAY_AUTH_TOKEN"].strip())
    if environ.get("RAY_AUTH_TOKEN_PATH"):
        path = environ["RAY_AUTH_TOKEN_PATH"]
        return Token(f"RAY_AUTH_TOKEN_PATH ({path})", _read_file(path, "RAY_AUTH_TOKEN_PATH"))
    if getattr(cluster, "auth_token_file", None):
        path = cluster.auth_token_file
        return Token(f"cluster.auth_token_file ({path})", _read_file(path, "cluster.auth_token_file"))
    secret = getattr(cluster, "auth_token_secret", None)
    if secret:
        value = (fetch_secret or secret_value)(secret, getattr(cluster, "region", None))
        return Token(f"the Secrets Manager secret {secret} (cluster.auth_token_secret)", value)
    return None


def secret_value(secret_id: str, region: Optional[str] = None) -> str:
    """A Secrets Manager secret's string, with the standard AWS chain; a ClusterError that says what to check."""
    import boto3

    try:
        session = boto3.session.Session(region_name=region or None)
        value = session.client("secretsmanager").get_secret_value(SecretId=secret_id).get("SecretString") or ""
    except Exception as exc:  # botocore ClientError, NoCredentialsError, NoRegionError, endpoint errors
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ClusterError(
            f"cannot read the Ray token from the Secrets Manager secret {secret_id} ({reason}): your AWS identity"
            " must be one of the secret's readers (infra/), or set RAY_AUTH_TOKEN / cluster.auth_token_file"
        ) from None
    if not value.strip():
        raise ClusterError(f"the Secrets Manager secret {secret_id} holds no Ray token: set it with"
                           " `aws secretsmanager put-secret-value` (infra/README.md)")
    return value.strip()


def enable_client_auth(token: Optional[Token], environ: Optional[MutableMapping[str, str]] = None) -> None:
    """Make this process's Ray client send `token`: RAY_AUTH_MODE=token (what Ray needs besides the token) and the
    token where Ray's loader finds it; then refresh Ray's cached config and token so that it applies now."""
    if token is None:
        return
    environ = os.environ if environ is None else environ
    environ["RAY_AUTH_MODE"] = "token"
    if "RAY_AUTH_TOKEN" not in environ and "RAY_AUTH_TOKEN_PATH" not in environ:
        environ["RAY_AUTH_TOKEN"] = token.value  # this process only (file or secret sources); never the job's
    if environ is os.environ:
        try:
            from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        except Exception:  # a Ray without token support: the explicit Authorization header below still works
            pass


def auth_failure(exc: BaseException, address: str, token: Optional[Token]) -> Optional[ClusterError]:
    """The one-line ClusterError for an authentication refusal (HTTP 401/403 from the head), else None."""
    text = " ".join(str(exc).split())
    refused = type(exc).__name__ == "AuthenticationError" or any(
        marker in text for marker in ("401", "403", "Unauthorized", "Forbidden", "authentication token")
    )
    if not refused:
        return None
    if token is None or "Missing authentication token" in text or "no authentication token" in text:
        return ClusterError(
            f"the Ray cluster at {address} requires an authentication token and none was found: {WHERE}"
        )
    return ClusterError(f"the Ray cluster at {address} refused the token from {token.source} (wrong token): {WHERE}")


def write_node_token(value: str, path: Path = DEFAULT_TOKEN_FILE) -> Path:
    """Write the token where Ray's loader reads it by default, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(value.strip())
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path




def main(argv: Optional[list] = None) -> int:
    """`python -m kon_ray.cluster.auth SECRET_ID [REGION]`: write the secret's token to ~/.ray/auth_token (the EC2
    start commands run this on every node before `ray start`; nothing is printed but the file's path)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m kon_ray.cluster.auth SECRET_ID [REGION]", file=sys.stderr)
        return 2
    try:
        path = write_node_token(secret_value(args[0], args[1] if len(args) > 1 else None))
    except ClusterError as exc:
        print(f"cluster error: {exc}", file=sys.stderr)
        return 5
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
