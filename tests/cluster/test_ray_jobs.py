"""cluster=ray: a run submitted as a Ray Job to a real local Ray head (Jobs API), and the submit logic offline."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kon_ray.cluster import jobs
from kon_ray.config import load_config
from kon_ray.errors import ClusterError, ConfigError
from tests.cluster.conftest import REPO, write_tiny_dataset
from tests.conftest import compose_config


def _run_cli(*overrides: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "kon_ray.run", *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.slow  # starts a real Ray head with its dashboard: ~1-2 min on 2 cores
def test_ingest_runs_as_a_ray_job(ray_head, tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data" / "POLA")
    out = tmp_path / "run"
    done = _run_cli(
        "+dataset=POLA", "cluster=ray", f"cluster.address={ray_head['address']}", "tracking=off",
        f"dataset.path={data}", f"output_dir={out}", "stages=[ingest]", f"hydra.run.dir={tmp_path / 'client'}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "ingest" / "ingest.json").read_text())
    assert summary["rows"] == 300
    assert "submitted Ray job" in done.stderr + done.stdout
    assert "stage ingest: finished" in done.stdout + done.stderr  # the job's log, streamed back


@pytest.mark.slow
def test_a_failing_job_returns_the_runs_exit_code(ray_head, tmp_path: Path) -> None:
    done = _run_cli(
        "+dataset=POLA", "cluster=ray", f"cluster.address={ray_head['address']}", "tracking=off",
        f"dataset.path={tmp_path / 'nowhere'}", f"output_dir={tmp_path / 'run'}", "stages=[ingest]",
        f"hydra.run.dir={tmp_path / 'client'}",
    )
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]  # DataError inside the job
    assert "no such file or folder" in done.stdout + done.stderr


def test_unreachable_address_is_a_cluster_error(tmp_path: Path) -> None:
    from tests.cluster.conftest import free_port

    done = _run_cli(
        "+dataset=POLA", "cluster=ray", f"cluster.address=http://127.0.0.1:{free_port()}", "tracking=off",
        f"output_dir={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'client'}", timeout=120,
    )
    assert done.returncode == 5
    assert "cannot reach the Ray Jobs API" in done.stderr
    assert "Traceback" not in done.stderr


# --- offline: the job's command line, the runtime env, exit codes, Ctrl-C ---


def _config(tmp_path: Path, *overrides: str):
    return load_config(compose_config(["+dataset=POLA", *overrides], tmp_path))


def test_job_overrides_join_the_clusters_ray_with_absolute_paths(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265")
    user = ["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265", "stages=[ingest]", "model.eta=0.2"]
    args = jobs.job_overrides(user, config)
    assert args[:4] == ["+dataset=POLA", "cluster=ray", "stages=[ingest]", "model.eta=0.2"]
    assert "cluster.address=http://h:8265" not in args
    assert args[-6:-1] == [
        "cluster.kind=local",
        "cluster.address=auto",
        f"dataset.path='{os.path.abspath('data/POLA')}'",
        f"output_dir='{tmp_path / 'run'}'",
        f"cluster.storage_path='{tmp_path / 'run' / 'ray_train'}'",
    ]
    assert args[-1] == f"hydra.run.dir='{tmp_path / 'run'}'"
    assert "model.eta=0.2" in args
    entry = jobs.entrypoint(args)
    assert entry.startswith("python -m kon_ray.run +dataset=POLA cluster=ray")


def test_job_overrides_compose_back_into_a_local_run(tmp_path: Path) -> None:
    """What the job will compose on the cluster: kind local, joining its Ray, same paths."""
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265")
    args = jobs.job_overrides(["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265"], config)
    job_cfg = compose_config([a for a in args if not a.startswith("hydra.")], None)
    job_cfg.output_dir = jobs.job_args_value(args, "output_dir")
    job = load_config(job_cfg)
    assert job.cluster.kind == "local" and job.cluster.address == "auto"
    assert job.output_dir == str(tmp_path / "run")
    assert job.cluster.storage_path == str(tmp_path / "run" / "ray_train")


def test_s3_paths_pass_through_and_shared_paths_are_required(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265", "dataset.path=s3://b/POLA")
    with pytest.raises(ConfigError, match="output_dir .* set output_dir=s3://"):
        jobs.job_overrides([], config, require_shared=True)
    args = jobs.job_overrides([], config)
    assert jobs.job_args_value(args, "dataset.path") == "s3://b/POLA"


def test_runtime_env_excludes_and_forwards_no_credentials(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265")
    env = jobs.runtime_env(config, {"AWS_SECRET_ACCESS_KEY": "x", "AWS_ACCESS_KEY_ID": "y",
                                    "AWS_ENDPOINT_URL_S3": "http://minio:9000"})
    assert env["working_dir"] == str(REPO)
    for excluded in (".venv/", "data/", "outputs/", ".git/", "multirun/", "mlruns/", "infra/"):
        assert excluded in env["excludes"]
    assert env["env_vars"] == {"AWS_ENDPOINT_URL_S3": "http://minio:9000"}
    assert "pip" not in env
    pip = jobs.runtime_env(_config(tmp_path, "cluster=ray", "cluster.address=http://h:8265",
                                   "cluster.runtime_env_pip=true"), {})
    assert pip["pip"].endswith("requirements.lock")


class FakeClient:
    def __init__(self, status="SUCCEEDED", exit_code=None, message="", logs=("hello\n",), interrupt=False):
        self.info = SimpleNamespace(status=status, driver_exit_code=exit_code, message=message)
        self.logs, self.interrupt, self.stopped, self.submitted = logs, interrupt, [], []

    def submit_job(self, **kwargs):
        self.submitted.append(kwargs)
        return "raysubmit_1"

    async def tail_job_logs(self, job_id):
        for chunk in self.logs:
            yield chunk
        if self.interrupt:
            raise KeyboardInterrupt

    def get_job_info(self, job_id):
        return self.info

    def stop_job(self, job_id):
        self.stopped.append(job_id)
        return True


def test_succeeded_streams_logs_and_returns_0() -> None:
    out, client = io.StringIO(), FakeClient()
    assert jobs.submit_and_wait(client, "python -m kon_ray.run", {}, out=out) == 0
    assert out.getvalue() == "hello\n"


def test_failed_with_driver_exit_code_returns_it() -> None:
    assert jobs.submit_and_wait(FakeClient("FAILED", 4), "x", {}, out=io.StringIO()) == 4


def test_failed_without_exit_code_is_a_cluster_error() -> None:
    client = FakeClient("FAILED", None, "runtime_env setup failed:\n pip error")
    with pytest.raises(ClusterError, match="ended FAILED: runtime_env setup failed: pip error") as err:
        jobs.submit_and_wait(client, "x", {}, out=io.StringIO())
    assert err.value.exit_code == 5


def test_stopped_is_a_cluster_error() -> None:
    with pytest.raises(ClusterError, match="ended STOPPED"):
        jobs.submit_and_wait(FakeClient("STOPPED", None, "Job was intentionally stopped."), "x", {}, out=io.StringIO())


def test_ctrl_c_stops_the_job_and_returns_130() -> None:
    client = FakeClient("RUNNING", interrupt=True)
    assert jobs.submit_and_wait(client, "x", {}, out=io.StringIO()) == 130
    assert client.stopped == ["raysubmit_1"]


def test_a_broken_log_stream_falls_back_to_polling() -> None:
    class Broken(FakeClient):
        async def tail_job_logs(self, job_id):
            raise RuntimeError("websocket closed")
            yield ""  # pragma: no cover

    assert jobs.submit_and_wait(Broken("FAILED", 2), "x", {}, out=io.StringIO(), poll_s=0.01) == 2


def test_missing_address_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cluster.address"):
        _config(tmp_path, "cluster=ray")
    with pytest.raises(ConfigError, match="cluster.address 'ray://h:10001' is not the Jobs API"):
        _config(tmp_path, "cluster=ray", "cluster.address=ray://h:10001")
