"""Real local servers for the cluster tests: a Ray head with the Jobs API, a moto server for S3/SageMaker/logs.

Both are scoped to what the tests start: the Ray head is stopped by killing the processes that name its own temp
folder (and their children), never with `ray stop`, which would kill every Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from kon_ray.net import free_port, free_ports, wait_for_port  # noqa: F401  (tests import them from here)
from tests.conftest import moto_environment

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def write_tiny_dataset(folder: Path | str, rows: int = 300) -> str:
    """A tiny generated POLA dataset (kon_ray.synth) at a local path or s3:// URI."""
    from kon_ray.config import load_config
    from kon_ray.synth.config import SynthConfig
    from kon_ray.synth.writer import generate
    from tests.conftest import compose_config

    dataset = load_config(compose_config(["+dataset=POLA"])).dataset
    generate(dataset, SynthConfig(rows=rows, rows_per_file=rows // 2), str(folder))
    return str(folder)


def _processes_of(temp_dir: str) -> List[int]:
    """PIDs of the processes whose command line names temp_dir, or whose open files (the logs Ray points their
    stdout at) lie in it, with all their descendants. Some of Ray's helpers (the client server) name only the
    head's address on their command line, and outlive the head as orphans otherwise."""
    import psutil

    roots = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(temp_dir in arg for arg in proc.info["cmdline"] or []) or any(
                    f.path.startswith(temp_dir) for f in proc.open_files()):
                roots.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids = set()
    for proc in roots:
        pids.add(proc.pid)
        try:
            pids.update(child.pid for child in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    pids.discard(os.getpid())
    return sorted(pids)


def stop_ray_head(temp_dir: str) -> None:
    import psutil

    pids = _processes_of(temp_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, alive = psutil.wait_procs([p for p in map(_proc, pids) if p], timeout=3)  # then SIGKILL: nothing to save
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _proc(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Dict[str, str]]:
    """A real Ray head with the dashboard (the Jobs API), 2 CPUs, on free ports, in its own short temp folder
    (Ray's socket paths must stay under 107 characters)."""
    temp_dir = tempfile.mkdtemp(prefix="krh", dir="/tmp")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    try:
        for _attempt in (1, 2):  # on a loaded machine the raylet can miss Ray's fixed 30 s registration window
            port, dash, client, agent, grpc, metrics, runtime_env = free_ports(7)  # distinct, fresh each attempt
            cmd = [
                str(VENV_BIN / "ray"), "start", "--head",
                f"--port={port}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
                "--num-cpus=2", f"--temp-dir={temp_dir}", "--object-store-memory=200000000",
                f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
                f"--dashboard-agent-grpc-port={grpc}", f"--metrics-export-port={metrics}",
                f"--runtime-env-agent-port={runtime_env}", "--disable-usage-stats",
            ]
            started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            if started.returncode == 0:
                break
            stop_ray_head(temp_dir)
        if started.returncode != 0:
            pytest.fail(f"ray start failed twice: {started.stderr[-2000:]}")
        if not wait_for_port(dash, 60):
            pytest.fail(f"the Ray dashboard did not open port {dash}")
        yield {"address": f"http://127.0.0.1:{dash}", "gcs": f"127.0.0.1:{port}", "temp_dir": temp_dir}
    finally:
        stop_ray_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def moto_endpoint(moto_server) -> Iterator[str]:
    """The session's moto server (tests/conftest.py, the one the session Ray's workers reach), with its fake
    credentials and endpoint in this process's environment for the module."""
    saved = {k: os.environ.get(k) for k in _MOTO_ENV}
    os.environ.update(moto_environment(moto_server))
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield moto_server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_MOTO_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


# --- a real multi-node Ray with token authentication on (tests/cluster/test_multinode.py) ---------------------


def token_env(token_file: Path, **extra: str) -> Dict[str, str]:
    """The environment of a node of the token-authenticated test cluster: Ray's token mode, the token from its
    file (as `ray start --head` on a machine with a token runs by default), nothing inherited from the suite's
    RAY_AUTH_MODE=disabled."""
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token_file))
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    env.update(extra)
    return env


def _node_ports() -> List[str]:
    flags = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc", "metrics-export",
             "runtime-env-agent")
    return [f"--{flag}-port={port}" for flag, port in zip(flags, free_ports(len(flags)))]


def _ray_start(cmd: List[str], env: Dict[str, str], temp_dir: str) -> None:
    for _ in (1, 2):  # on a loaded machine a raylet can miss Ray's fixed 30 s registration window
        started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        if started.returncode == 0:
            return
        stop_ray_head(temp_dir)
    pytest.fail(f"{' '.join(cmd[:3])} failed twice: {started.stderr[-2000:]}")


def start_worker_node(cluster: Dict[str, Any], cpus: int) -> str:
    """One more worker node (its own raylet, object store and agents) joining the cluster; its node id."""
    import json as _json

    before = set(cluster["node_ids"]())
    # its own temp folder: nodes sharing one would share runtime_resources/, and one node's cleanup of a job's
    # working_dir would delete the folder the job's driver runs in on another
    temp_dir = tempfile.mkdtemp(prefix="kmw", dir="/tmp")
    cluster["temp_dirs"].append(temp_dir)
    _ray_start([str(VENV_BIN / "ray"), "start", f"--address={cluster['gcs']}", f"--num-cpus={cpus}",
                "--object-store-memory=120000000", f"--temp-dir={temp_dir}", *_node_ports(),
                "--disable-usage-stats"], cluster["env"], temp_dir)
    for _ in range(120):
        new = set(cluster["node_ids"]()) - before
        if new:
            node_id = new.pop()
            cluster["node_temp_dirs"][node_id] = temp_dir
            return node_id
        time.sleep(0.5)
    pytest.fail(f"the new worker node did not register ({_json.dumps(sorted(before))})")


@pytest.fixture(scope="module")
def token_cluster(moto_endpoint, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    """A Ray head (no CPUs: every task runs on a worker node) and two worker nodes of 2 CPUs each, each node its own
    raylet, all with token authentication on; the Jobs API on a free port of 127.0.0.1."""
    import secrets as _secrets

    temp_dir = tempfile.mkdtemp(prefix="kmn", dir="/tmp")
    token_file = tmp_path_factory.mktemp("ray_token") / "auth_token"
    token_file.write_text(_secrets.token_hex(32))
    token_file.chmod(0o600)
    env = token_env(token_file)
    port, dash, client = free_ports(3)
    cluster: Dict[str, Any] = {
        "address": f"http://127.0.0.1:{dash}", "gcs": f"127.0.0.1:{port}", "temp_dir": temp_dir,
        "token_file": token_file, "token": token_file.read_text(), "env": env, "temp_dirs": [temp_dir],
        "node_temp_dirs": {},
    }
    cluster["node_ids"] = lambda: [n["node_id"] for n in state_query(cluster, "nodes") if n["state"] == "ALIVE"]
    try:
        _ray_start([
            str(VENV_BIN / "ray"), "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=0", f"--temp-dir={temp_dir}",
            "--object-store-memory=120000000", f"--ray-client-server-port={client}", *_node_ports(),
            "--disable-usage-stats",
        ], env, temp_dir)
        if not wait_for_port(dash, 60):
            pytest.fail(f"the Ray dashboard did not open port {dash}")
        cluster["head_node"] = cluster["node_ids"]()[0]
        cluster["workers"] = [start_worker_node(cluster, 2), start_worker_node(cluster, 2)]
        yield cluster
    finally:  # a throwaway cluster: every process of its nodes killed at once, no graceful wait per node
        pids = sorted({pid for folder in cluster["temp_dirs"] for pid in _processes_of(folder)})
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for folder in cluster["temp_dirs"]:
            shutil.rmtree(folder, ignore_errors=True)


_STATE_SCRIPT = """
import json, sys
from ray.util import state
kind, address = sys.argv[1], sys.argv[2]
if kind == "nodes":
    rows = [{"node_id": n.node_id, "state": n.state} for n in state.list_nodes(address=address, limit=1000)]
elif kind == "tasks":
    rows = [{"name": t.name, "node_id": t.node_id, "state": t.state, "type": t.type, "job_id": t.job_id,
             "worker_id": t.worker_id, "start_time_ms": t.start_time_ms}
            for t in state.list_tasks(address=address, detail=True, limit=10000, raise_on_missing_output=False)]
else:
    rows = [{"node_id": w.node_id, "worker_id": w.worker_id, "worker_type": w.worker_type, "pid": w.pid}
            for w in state.list_workers(address=address, detail=True, limit=10000, raise_on_missing_output=False)]
print(json.dumps(rows))
"""


def state_query(cluster: Dict[str, Any], kind: str) -> List[Dict[str, Any]]:
    """Ray's state API (ray.util.state: list_nodes / list_tasks / list_workers) against the cluster, in a
    subprocess with the token (this test process runs with Ray's authentication off)."""
    import json as _json

    done = subprocess.run([sys.executable, "-c", _STATE_SCRIPT, kind, cluster["address"]], env=cluster["env"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"ray.util.state list {kind} failed: {done.stderr[-2000:]}")
    return _json.loads(done.stdout.strip().splitlines()[-1])
