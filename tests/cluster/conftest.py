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
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from kon_ray.net import free_port, wait_for_port  # noqa: F401  (tests import them from here)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def write_tiny_dataset(folder: Path | str, rows: int = 300) -> str:
    """A tiny generated POLA dataset (kon_ray.synth) at a local path or s3:// URI."""
    from kon_ray.config import load_config
    from kon_ray.synth import generate
    from kon_ray.synth.config import SynthConfig
    from tests.conftest import compose_config

    dataset = load_config(compose_config(["+dataset=POLA"])).dataset
    generate(dataset, SynthConfig(rows=rows, rows_per_file=rows // 2), str(folder))
    return str(folder)


def _processes_of(temp_dir: str) -> List[int]:
    """PIDs of the processes whose command line names temp_dir, with all their descendants."""
    import psutil

    roots = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(temp_dir in arg for arg in proc.info["cmdline"] or []):
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
    _, alive = psutil.wait_procs([p for p in map(_proc, pids) if p], timeout=10)
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
    port, dash = free_port(), free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head",
        f"--port={port}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
        "--num-cpus=2", f"--temp-dir={temp_dir}", "--object-store-memory=200000000",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}", "--disable-usage-stats",
    ]
    try:
        for attempt in (1, 2):  # on a loaded machine the raylet can miss Ray's fixed 30 s registration window
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
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 (S3, SageMaker, CloudWatch Logs) with fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in _MOTO_ENV}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="eu-west-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_MOTO_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")
