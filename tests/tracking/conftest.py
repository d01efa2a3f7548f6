"""Fixtures for the tracking tests: a real `mlflow server` on 127.0.0.1, a shared local sqlite store, tiny data,
and a run folder the real pipeline wrote (`pipeline_run`)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray import stages
from kon_ray.net import free_port  # noqa: F401  (tests import it from here)
from tests.conftest import REPO, compose_config, generate_pola


def subprocess_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0")
    # what mlflow.set_tracking_uri/set_experiment export for child processes: a server started with an earlier
    # test's experiment id would use it (a 3.0 server files a model's metrics under its own process's experiment)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "KON_MLFLOW_PARENT_RUN_ID"):
        env.pop(name, None)
    env.update(extra)
    return env


# The MLflow version infra/ gives the SageMaker-managed server (requirements-mlflow-server.lock), installed apart
# from .venv by `make mlflow-server` (part of `make test`): `mlflow_server_pair` runs it, so that every run of the
# suite checks the locked client against it (README, "Tracking and sweeps": the supported pair).
PAIR_SERVER_PATH = REPO / ".venv" / "mlflow-server"
# Another MLflow for `mlflow_server` as well (e.g. KON_MLFLOW_SERVER_PATH=.venv/mlflow-server pytest tests/tracking
# runs every server test against the pair's server); the client stays the locked one.
SERVER_PATH_ENV = "KON_MLFLOW_SERVER_PATH"


def serve_mlflow(root: Path, server_path: str | None, port: int | None = None) -> Iterator[str]:
    """A real MLflow tracking server, sqlite backend and proxied artifacts under `root`, on `port` (default: a free
    one), importing MLflow from `server_path` first when given; its URI while the generator is suspended. The same
    root and port again is the same server restarted."""
    port = port or free_port()
    log = open(root / "server.log", "a")
    env = subprocess_env(PYTHONPATH=os.pathsep.join([server_path, str(REPO)])) if server_path else subprocess_env()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a loaded CI machine takes minutes
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited {process.returncode}: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not answer /health in 300 s: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real MLflow tracking server of the locked version (or of $KON_MLFLOW_SERVER_PATH); its URI."""
    yield from serve_mlflow(tmp_path_factory.mktemp("mlflow_server"), os.environ.get(SERVER_PATH_ENV))


@pytest.fixture(scope="session")
def mlflow_server_pair(tmp_path_factory) -> Iterator[str]:
    """A real MLflow tracking server of the version infra/ deploys (requirements-mlflow-server.lock); its URI."""
    if not (PAIR_SERVER_PATH / "mlflow").is_dir():
        pytest.fail(f"{PAIR_SERVER_PATH} is missing: `make mlflow-server` installs the server version infra/ runs")
    yield from serve_mlflow(tmp_path_factory.mktemp("mlflow_server_pair"), str(PAIR_SERVER_PATH))


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory) -> str:
    """One local sqlite store for the in-process tracker tests (creating a store runs its migrations: seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow_local') / 'mlflow.db'}"


def tiny_table(columns: Dict[str, str], rows: int = 24) -> pa.Table:
    """Rows matching a dataset's declared `columns:` (conf/dataset/*.yaml), whatever they are."""
    data = {}
    for i, (name, kind) in enumerate(columns.items()):
        if kind == "int64":
            data[name] = pa.array(range(rows), pa.int64())
        elif kind == "float64":
            data[name] = pa.array([float(r * (i + 1)) for r in range(rows)], pa.float64())
        elif kind == "string":
            data[name] = pa.array([["a", "b", "c"][r % 3] for r in range(rows)], pa.string())
        elif kind == "bool":
            data[name] = pa.array([r % 2 == 0 for r in range(rows)], pa.bool_())
        else:
            data[name] = pa.array([dt.date(2025, 1 + r % 12, 1) for r in range(rows)], pa.date32())
    return pa.table(data)


@pytest.fixture(scope="session")
def tiny_pola(tmp_path_factory) -> Path:
    """A tiny POLA dataset folder that passes ingest."""
    cfg = compose_config(["+dataset=POLA"])
    folder = tmp_path_factory.mktemp("data") / "POLA"
    folder.mkdir()
    pq.write_table(tiny_table(dict(cfg.dataset.columns)), folder / "part-00000.parquet")
    return folder


@dataclass(frozen=True)
class PipelineRun:
    """A run folder the real stages wrote, and what each stage returned. Shared by every test of the session:
    read it, never write into it (copy it to tmp_path first)."""

    folder: Path
    metrics: Dict[str, Dict[str, Any]]

    def stage_folder(self, stage: str) -> Path:
        return self.folder / stages.stage(stage).folder

    def log_to(self, tracker: Any, seconds: float = 0.5) -> None:
        """Tell `tracker` about every stage as the pipeline does (kon_ray/pipeline.py), in the registry's order."""
        for stage, metrics in self.metrics.items():
            tracker.stage_finished(stage, seconds, metrics, str(self.stage_folder(stage)))


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, ray_session) -> PipelineRun:
    """The whole pipeline once, on generated POLA data (debug=tiny, tracking off): the folders the tracker reads
    in production, in the formats the stages write."""
    from kon_ray.config import load_config, to_plain
    from kon_ray.run import run

    root = tmp_path_factory.mktemp("pipeline_run")
    data = generate_pola(root / "data" / "POLA", rows=3000)
    cfg = compose_config(["+dataset=POLA", "debug=tiny", "tracking=off", f"dataset.path={data}",
                          f"cache_dir={root / 'cache'}"], root)
    results = run(load_config(cfg), to_plain(cfg))
    assert list(results) == list(stages.STAGE_ORDER)
    return PipelineRun(root / "run", results)
