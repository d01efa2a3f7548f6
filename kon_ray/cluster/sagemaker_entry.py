"""Inside a SageMaker training job (`docker/entrypoint.sh train`): one Ray cluster across the job's instances.

Every instance reads /opt/ml/input/config/resourceconfig.json (`current_host`, `hosts`). The first host of
`hosts`, in the order SageMaker gives, is the head: it starts the Ray head, waits until every host's node has
joined (or fails after a timeout, naming the hosts that did not), runs `python -m kon_ray.run` (or
`kon_ray.sweep`: the `kon_module` hyperparameter) with the launcher's overrides (joining this Ray:
cluster.address=auto; data from the "data" channel; the run folder on S3), then stops its Ray. The other hosts
wait for the head's port, join it, and stay until the head's port closes, then exit 0: a worker outliving its
head is the normal end of the job, not a failure (SageMaker would mark the job Failed if any instance exited
non-zero, which `ray start --block` does when its head goes away).

Each instance runs its Ray node as `ray start ... --block` in a process group of its own and stops it by
signalling that group: exactly this node's processes, never `ray stop`'s every Ray on the machine.

Authentication: before starting Ray, every instance reads the Ray token from the Secrets Manager secret named by
$KON_RAY_TOKEN_SECRET (set by the launcher; the execution role may read it) into ~/.ray/auth_token and runs Ray,
and the pipeline, with RAY_AUTH_MODE=token: a process inside the VPC without the token can neither join the
cluster nor submit to it. Without the variable, or when the secret cannot be read, the instance refuses to start
Ray (fail closed). The head's dashboard listens on the instance's private address, not 0.0.0.0.

Failures reach SageMaker as its contract says: one line in /opt/ml/output/failure (the job's FailureReason) and a
non-zero exit: 1 for the bootstrap's own failures (no plan, no token, Ray not starting, a host not joining), the
pipeline's own documented exit code (kon_ray/errors.py) when the run fails, with the run's one-line error as the
reason.

What the rehearsal (tests/cluster/test_cloud_rehearsal.py) changes, and nothing else, through the environment:
KON_SM_ROOT (the folder standing for /opt/ml; overrides naming /opt/ml/... are read under it),
KON_SM_HOST_ADDRESSES (a JSON {host: IP}, standing for the job's /etc/hosts), KON_RAY_PORT (the head's port,
6379), KON_RAY_START_ARGS (more `ray start` arguments: the free ports and temp folder of a node sharing one machine
with others) and KON_RAY_JOIN_TIMEOUT_S (600).

`plan_node` is the pure part (tested on sample resource configs); `main` does the waiting and the processes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, MutableMapping, Optional, Sequence

from kon_ray.cluster import auth
from kon_ray.errors import ClusterError

log = logging.getLogger("kon_ray.cluster.sagemaker_entry")  # the module name, also as __main__

ML_ROOT = "/opt/ml"
RESOURCE_CONFIG = "input/config/resourceconfig.json"  # under the root
HYPERPARAMETERS = "input/config/hyperparameters.json"
FAILURE_FILE = "output/failure"  # SageMaker shows its text as the job's FailureReason
RAY_PORT = 6379
TOKEN_SECRET_ENV = "KON_RAY_TOKEN_SECRET"  # the secret's name or ARN (kon_ray/cluster/sagemaker.py sets it)
MODULE_HYPERPARAMETER = "kon_module"  # what the head runs: a run, or a whole sweep (kon_ray/sweep/job.py)
MODULES = ("kon_ray.run", "kon_ray.sweep")  # nothing else: the hyperparameter never names arbitrary code
JOIN_TIMEOUT_S = 600.0
# the rehearsal's knobs (module docstring); unset on SageMaker
ROOT_ENV = "KON_SM_ROOT"
HOSTS_ENV = "KON_SM_HOST_ADDRESSES"
PORT_ENV = "KON_RAY_PORT"
START_ARGS_ENV = "KON_RAY_START_ARGS"
JOIN_TIMEOUT_ENV = "KON_RAY_JOIN_TIMEOUT_S"
POLL_S = 2.0
START_ATTEMPTS = 2  # `ray start` once more when its raylet missed Ray's fixed registration window (a loaded host)
# kon_ray's one-line error, as conf/hydra/job_logging/kon.yaml formats it
ERROR_LINE = re.compile(r"^\d\d:\d\d:\d\d ERROR [\w.]+: (.+)$")


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
        raise ValueError(f"resourceconfig.json lacks current_host or hosts: {resource_config}")
    if current not in hosts:
        raise ValueError(f"current_host {current!r} is not among hosts {hosts}")
    head = hosts[0]
    return NodePlan("head" if current == head else "worker", current, head, hosts, port)


@dataclass(frozen=True)
class Settings:
    """Where this instance's contract lies and how its Ray node is started (the environment's, read once)."""

    root: Path = Path(ML_ROOT)
    addresses: Optional[Dict[str, str]] = None  # None: resolve host names (SageMaker's /etc/hosts)
    port: int = RAY_PORT
    start_args: tuple = ()
    join_timeout_s: float = JOIN_TIMEOUT_S

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings":
        addresses = json.loads(environ[HOSTS_ENV]) if environ.get(HOSTS_ENV) else None
        if addresses is not None and not isinstance(addresses, dict):
            raise ValueError(f"${HOSTS_ENV} must be a JSON object {{host: IP}}, got {environ[HOSTS_ENV]!r}")
        return cls(
            root=Path(environ.get(ROOT_ENV) or ML_ROOT),
            addresses=addresses,
            port=int(environ.get(PORT_ENV) or RAY_PORT),
            start_args=tuple(shlex.split(environ.get(START_ARGS_ENV, ""))),
            join_timeout_s=float(environ.get(JOIN_TIMEOUT_ENV) or JOIN_TIMEOUT_S),
        )

    def path(self, relative: str) -> Path:
        return self.root / relative

    def address(self, host: str) -> str:
        if self.addresses is not None:
            if host not in self.addresses:
                raise ValueError(f"${HOSTS_ENV} has no address for host {host!r}")
            return self.addresses[host]
        return socket.gethostbyname(host)


def run_overrides(environ: Mapping[str, str], hyperparameters: Dict[str, Any],
                  root: str = ML_ROOT) -> List[str]:
    """The launcher's overrides: $KON_OVERRIDES, else the `kon_overrides` hyperparameter (a JSON list); paths the
    launcher names under /opt/ml (the data channel) read under `root`."""
    raw = environ.get("KON_OVERRIDES") or hyperparameters.get("kon_overrides") or "[]"
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"kon_overrides must be a JSON list of strings, got {raw!r}")
    if root.rstrip("/") != ML_ROOT:
        value = [v.replace(f"{ML_ROOT}/", f"{root.rstrip('/')}/") for v in value]
    return value


def run_module(hyperparameters: Dict[str, Any]) -> str:
    """The command the head runs: the `kon_module` hyperparameter, kon_ray.run when absent."""
    module = hyperparameters.get(MODULE_HYPERPARAMETER) or "kon_ray.run"
    if module not in MODULES:
        raise ValueError(f"{MODULE_HYPERPARAMETER} must be one of {', '.join(MODULES)}, got {module!r}")
    return str(module)


def pipeline_command(overrides: Sequence[str], module: str = "kon_ray.run") -> List[str]:
    return [sys.executable, "-m", module, *overrides]


def wait_for_hosts(addresses: Dict[str, str], alive: Callable[[], List[str]], timeout_s: float,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> int:
    """Until every host of `addresses` ({host: IP}) has an alive Ray node (`alive()`: their IPs, one per node);
    a RuntimeError naming the hosts still missing after timeout_s."""
    deadline = clock() + timeout_s
    while True:
        ips = alive()
        missing = [host for host, ip in addresses.items() if ip not in ips]
        if not missing and len(ips) >= len(addresses):
            return len(ips)
        if clock() > deadline:
            named = ", ".join(f"{host} ({addresses[host]})" for host in missing) or "(hosts sharing an address)"
            raise RuntimeError(
                f"{len(ips)} of {len(addresses)} Ray nodes joined within {timeout_s:.0f} s; not joined: {named}"
                f" (joined: {', '.join(sorted(ips)) or 'none'}): check that host's log (the security group / VPC"
                " must allow traffic between the job's instances)"
            )
        sleep(POLL_S)


def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _alive_ips() -> List[str]:
    import ray

    return [node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")]


def _read_json(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _fail(settings: Settings, message: str, code: int = 1) -> int:
    log.error(message)
    failure = settings.path(FAILURE_FILE)
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(message[:1000])
    except OSError:
        pass
    return code


class RayNode:
    """This instance's Ray node: `ray start ... --block` in a process group of its own (Ray makes the command its
    group's leader), stopped by signalling that group: SIGTERM, then SIGKILL after a short grace (the run is over
    by then, so Ray's own drain on SIGTERM has nothing left to wait for)."""

    def __init__(self, command: Sequence[str], popen: Callable[..., Any] = subprocess.Popen) -> None:
        log.info("starting Ray: %s", shlex.join(command))
        self.proc = popen([*command, "--block"], start_new_session=True)

    def exited(self) -> Optional[int]:
        return self.proc.poll()

    def stop(self, grace_s: float = 5.0) -> None:
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:  # the command is gone; its group may still hold Ray's processes
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            return


def run_pipeline(overrides: Sequence[str], env: Dict[str, str], popen: Callable[..., Any] = subprocess.Popen,
                 module: str = "kon_ray.run") -> tuple[int, Optional[str]]:
    """Run the pipeline (or the sweep) with its output passed through (to the instance's log, CloudWatch); its exit
    code and the last one-line error it logged."""
    command = pipeline_command(overrides, module)
    log.info("running: %s", shlex.join(command))
    proc = popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                 bufsize=1)
    error = None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        match = ERROR_LINE.match(line.rstrip("\n"))
        if match:
            error = match.group(1)
    return proc.wait(), error


def run_head(plan: NodePlan, overrides: Sequence[str], settings: Settings,
             start: Callable[[Sequence[str]], RayNode] = RayNode, module: str = "kon_ray.run") -> int:
    ip = settings.address(plan.current_host)
    command = [*plan.start_command(ip), *settings.start_args]
    node, attempts = start(command), 1
    address = f"{ip}:{plan.port}"
    try:
        deadline = time.monotonic() + settings.join_timeout_s
        while not port_open(ip, plan.port, timeout=1.0):
            if node.exited() is not None and attempts < START_ATTEMPTS and time.monotonic() < deadline:
                log.warning("ray start --head on %s ended before its port opened; starting it again",
                            plan.current_host)
                node.stop()
                node, attempts = start(command), attempts + 1
            elif node.exited() is not None or time.monotonic() > deadline:
                return _fail(settings, f"the Ray head did not start on {plan.current_host} ({address}): see its log")
            time.sleep(0.5)
        import ray

        ray.init(address=address, log_to_driver=False)
        try:
            joined = wait_for_hosts({h: settings.address(h) for h in plan.hosts}, _alive_ips,
                                    settings.join_timeout_s)
        finally:
            ray.shutdown()
        log.info("all %d Ray nodes joined", joined)
        code, error = run_pipeline(overrides, dict(os.environ, RAY_ADDRESS=address), module=module)
        if code != 0:
            return _fail(settings, error or f"python -m {module} exited {code} (see the head's log)", code)
        return 0
    except RuntimeError as exc:
        return _fail(settings, str(exc))
    except Exception as exc:  # ray.init refused (ConnectionError, an authentication error): one line, not a trace
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        return _fail(settings, f"the head could not connect to its own Ray at {address}: {reason}")
    finally:
        node.stop()  # the workers see the head's port close and exit


def run_worker(plan: NodePlan, settings: Settings, start: Callable[[Sequence[str]], RayNode] = RayNode,
               sleep: Callable[[float], None] = time.sleep) -> int:
    head_ip = settings.address(plan.head_host)
    deadline = time.monotonic() + settings.join_timeout_s
    while not port_open(head_ip, plan.port):
        if time.monotonic() > deadline:
            return _fail(settings, f"the Ray head {plan.head_address} did not open its port within"
                                   f" {settings.join_timeout_s:.0f} s")
        sleep(POLL_S)
    command = [*plan.start_command(settings.address(plan.current_host), head_ip), *settings.start_args]
    node, attempts = start(command), 1
    try:
        while port_open(head_ip, plan.port):  # until the head is done with the run
            if node.exited() is not None and port_open(head_ip, plan.port):
                if attempts >= START_ATTEMPTS:
                    return _fail(settings, f"ray start on {plan.current_host} could not join {plan.head_address}"
                                           f" ({attempts} attempts; a wrong token is refused): see its log")
                # a raylet that missed Ray's fixed registration window on a loaded instance: once more
                log.warning("ray start on %s ended before the run did; starting it again", plan.current_host)
                node.stop()
                node, attempts = start(command), attempts + 1
            sleep(POLL_S)
    finally:
        node.stop()
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
    settings = Settings()
    try:
        settings = Settings.from_environ(os.environ)
        port = settings.port
        plan = plan_node(_read_json(Path(os.environ.get("KON_RESOURCE_CONFIG") or settings.path(RESOURCE_CONFIG))),
                         port)
        hyperparameters = _read_json(settings.path(HYPERPARAMETERS))
        overrides = run_overrides(os.environ, hyperparameters, str(settings.root))
        module = run_module(hyperparameters)
        settings.address(plan.head_host)
    except (ValueError, OSError) as exc:  # json.JSONDecodeError is a ValueError; socket.gaierror an OSError
        return _fail(settings, f"cannot plan the Ray cluster: {exc}")
    try:
        enable_token_auth(os.environ)  # os.environ: this process and its children
    except RuntimeError as exc:
        return _fail(settings, f"cannot set up Ray's token authentication: {exc}")
    log.info("%s is the Ray %s (head %s, %d hosts)", plan.current_host, plan.role, plan.head_address,
             len(plan.hosts))
    return run_head(plan, overrides, settings, module=module) if plan.role == "head" else run_worker(plan, settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
