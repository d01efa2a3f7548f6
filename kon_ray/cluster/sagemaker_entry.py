"""Inside a SageMaker training job (`docker/entrypoint.sh train`): one Ray cluster across the job's instances.

Every instance reads /opt/ml/input/config/resourceconfig.json (`current_host`, `hosts`). The first host of
`hosts`, in the order SageMaker gives, is the head: it starts `ray start --head`, waits until every host's node
has joined (or fails after a timeout), runs `python -m kon_ray.run` with the launcher's overrides (joining this
Ray: cluster.address=auto; data from the "data" channel; the run folder on S3), then stops Ray. The other hosts
wait for the head's port, `ray start --address=HEAD:6379`, and stay until the head's port closes, then exit 0:
a worker outliving its head is the normal end of the job, not a failure (SageMaker would mark the job Failed if
any instance exited non-zero, which `ray start --block` does when its head goes away).

Authentication: before `ray start`, every instance reads the Ray token from the Secrets Manager secret named by
$KON_RAY_TOKEN_SECRET (set by the launcher; the execution role may read it) into ~/.ray/auth_token and runs Ray,
and the pipeline, with RAY_AUTH_MODE=token: a process inside the VPC without the token can neither join the
cluster nor submit to it. Without the variable the instance refuses to start Ray (fail closed). The head's
dashboard listens on the instance's private address, not 0.0.0.0.

`plan_node` is the pure part (tested on sample resource configs); `main` does the waiting and the processes.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, MutableMapping, Optional, Sequence

from kon_ray.cluster import auth
from kon_ray.errors import ClusterError

log = logging.getLogger("kon_ray.cluster.sagemaker_entry")  # the module name, also as __main__

RESOURCE_CONFIG = "/opt/ml/input/config/resourceconfig.json"
HYPERPARAMETERS = "/opt/ml/input/config/hyperparameters.json"
FAILURE_FILE = "/opt/ml/output/failure"  # SageMaker shows its text as the job's FailureReason
RAY_PORT = 6379
TOKEN_SECRET_ENV = "KON_RAY_TOKEN_SECRET"  # the secret's name or ARN (kon_ray/cluster/sagemaker.py sets it)
JOIN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class NodePlan:
    role: str  # "head" or "worker"
    current_host: str
    head_host: str
    hosts: List[str]
    port: int

    @property
    def head_address(self) -> str:
        return f"{self.head_host}:{self.port}"

    def start_command(self, node_ip: str, head_ip: Optional[str] = None) -> List[str]:
        """`ray start` for this node; IPs resolved by the caller (SageMaker hosts resolve by name)."""
        common = [f"--node-ip-address={node_ip}", "--disable-usage-stats"]
        if self.role == "head":
            return ["ray", "start", "--head", f"--port={self.port}", f"--dashboard-host={node_ip}", *common]
        return ["ray", "start", f"--address={head_ip or self.head_host}:{self.port}", *common]


def plan_node(resource_config: Dict[str, Any], port: int = RAY_PORT) -> NodePlan:
    """The head is the first of `hosts`, as SageMaker lists them (algo-1, algo-2, ...), on every instance alike."""
    hosts = list(resource_config.get("hosts") or [])
    current = resource_config.get("current_host")
    if not hosts or not current:
        raise ValueError(f"{RESOURCE_CONFIG} lacks current_host or hosts: {resource_config}")
    if current not in hosts:
        raise ValueError(f"current_host {current!r} is not among hosts {hosts}")
    head = hosts[0]
    return NodePlan("head" if current == head else "worker", current, head, hosts, port)


def run_overrides(environ: Dict[str, str], hyperparameters: Dict[str, Any]) -> List[str]:
    """The launcher's overrides: $KON_OVERRIDES, else the `kon_overrides` hyperparameter (a JSON list)."""
    raw = environ.get("KON_OVERRIDES") or hyperparameters.get("kon_overrides") or "[]"
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"kon_overrides must be a JSON list of strings, got {raw!r}")
    return value


def pipeline_command(overrides: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "kon_ray.run", *overrides]


def wait_for_nodes(expected: int, count: Callable[[], int], timeout_s: float,
                   sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    """Until `count()` reaches `expected`; a RuntimeError naming the shortfall after timeout_s."""
    deadline = clock() + timeout_s
    while True:
        joined = count()
        if joined >= expected:
            return joined
        if clock() > deadline:
            raise RuntimeError(
                f"only {joined} of {expected} Ray nodes joined within {timeout_s:.0f} s: check the workers'"
                " logs (security group / VPC must allow traffic between the job's instances)"
            )
        sleep(2.0)


def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _alive_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def _read_json(path: str) -> Dict[str, Any]:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def _fail(message: str) -> int:
    log.error(message)
    try:
        Path(FAILURE_FILE).parent.mkdir(parents=True, exist_ok=True)
        Path(FAILURE_FILE).write_text(message[:1000])
    except OSError:
        pass
    return 1


def run_head(plan: NodePlan, overrides: Sequence[str], run: Callable[..., Any] = subprocess.run) -> int:
    ip = socket.gethostbyname(plan.current_host)
    if run(plan.start_command(ip)).returncode != 0:
        return _fail("ray start --head failed on the head instance")
    try:
        import ray

        ray.init(address="auto", log_to_driver=False)
        try:
            joined = wait_for_nodes(len(plan.hosts), _alive_nodes, JOIN_TIMEOUT_S)
        finally:
            ray.shutdown()
        log.info("all %d Ray nodes joined; running: %s", joined, shlex.join(pipeline_command(overrides)))
        code = run(pipeline_command(overrides), env=dict(os.environ, RAY_ADDRESS="auto")).returncode
        if code != 0:
            return _fail(f"the kon_ray run exited {code} (see the head's log for the one-line error above it)")
        return 0
    except RuntimeError as exc:
        return _fail(str(exc))
    finally:
        run(["ray", "stop"])  # the workers see the head's port close and exit


def run_worker(plan: NodePlan, run: Callable[..., Any] = subprocess.run,
               sleep: Callable[[float], None] = time.sleep) -> int:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not port_open(plan.head_host, plan.port):
        if time.monotonic() > deadline:
            return _fail(f"the Ray head {plan.head_address} did not open its port within {JOIN_TIMEOUT_S:.0f} s")
        sleep(2.0)
    head_ip = socket.gethostbyname(plan.head_host)
    if run(plan.start_command(socket.gethostbyname(plan.current_host), head_ip)).returncode != 0:
        return _fail(f"ray start on {plan.current_host} could not join {plan.head_address}")
    while port_open(plan.head_host, plan.port):  # until the head is done with the run
        sleep(10.0)
    run(["ray", "stop"])
    log.info("the head closed; %s exits", plan.current_host)
    return 0


def enable_token_auth(environ: MutableMapping[str, str], fetch: Optional[Callable[[str], str]] = None,
                      token_file: Optional[Path] = None) -> Path:
    """Read the token from the secret named by $KON_RAY_TOKEN_SECRET into the token file and turn Ray's token mode
    on for this process and its children (`ray start`, the pipeline). A RuntimeError when it cannot."""

    secret = environ.get(TOKEN_SECRET_ENV)
    if not secret:
        raise RuntimeError(f"${TOKEN_SECRET_ENV} is not set: the launcher names the Ray token's secret there"
                           " (cluster.auth_token_secret); refusing to start Ray without authentication")
    try:
        value = (fetch or auth.secret_value)(secret)
    except ClusterError as exc:
        raise RuntimeError(str(exc)) from None
    path = auth.write_node_token(value, token_file or auth.DEFAULT_TOKEN_FILE)
    environ.pop("RAY_AUTH_TOKEN", None)
    environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(path))
    return path


def main(argv: Sequence[str] = ()) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plan = plan_node(_read_json(os.environ.get("KON_RESOURCE_CONFIG", RESOURCE_CONFIG)))
        overrides = run_overrides(dict(os.environ), _read_json(HYPERPARAMETERS))
    except (ValueError, json.JSONDecodeError) as exc:
        return _fail(f"cannot plan the Ray cluster: {exc}")
    try:
        enable_token_auth(os.environ)  # os.environ: this process and its children
    except RuntimeError as exc:
        return _fail(f"cannot set up Ray's token authentication: {exc}")
    log.info("%s is the Ray %s (head %s, %d hosts)", plan.current_host, plan.role, plan.head_address,
             len(plan.hosts))
    return run_head(plan, overrides) if plan.role == "head" else run_worker(plan)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
