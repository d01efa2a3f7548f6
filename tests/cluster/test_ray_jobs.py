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
from mlflow.tracking import MlflowClient

from kon_ray.cluster import jobs
from kon_ray.config import load_config
from kon_ray.errors import ClusterError, ConfigError
from tests.cluster.conftest import REPO, write_tiny_dataset
from tests.conftest import compose_config
from tests.tracking.conftest import mlflow_server  # noqa: F401  (a real MLflow server, session-scoped)
from tests.tracking.record import assert_complete_record


def _run_cli(*overrides: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "kon_ray.run", *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.slow  # a real Ray head with its dashboard, the whole pipeline as a Ray Job: ~1-2 min on 2 cores
def test_a_whole_run_as_a_ray_job_with_a_local_run_folder_is_tracked_completely(ray_head, mlflow_server,  # noqa: F811
                                                                               tmp_path: Path) -> None:
    """The Jobs path with a run folder on a shared file system: the outputs there, and MLflow holds the whole
    record (issue 26: params, every stage's metrics and files, both models), logged by the job's driver."""
    data = write_tiny_dataset(tmp_path / "data" / "POLA", rows=3000)
    out = tmp_path / "run"
    done = _run_cli(
        "+dataset=POLA", "debug=tiny", "cluster=ray", f"cluster.address={ray_head['address']}",
        f"tracking.uri={mlflow_server}", "tracking.experiment=ray-job", f"dataset.path={data}", f"output_dir={out}",
        f"hydra.run.dir={tmp_path / 'client'}", timeout=420,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert "submitted Ray job" in log and "stage infer: finished" in log  # the job's log, streamed back
    assert "could not log" not in log and "tracking incomplete" not in log
    assert json.loads((out / "ingest" / "ingest.json").read_text())["rows"] == 3000
    index = json.loads((out / "index.json").read_text())
    assert list(index["stages"]) == ["ingest", "preprocess", "segment", "drift", "train", "infer"]
    (run,) = MlflowClient(mlflow_server).search_runs(
        [MlflowClient(mlflow_server).get_experiment_by_name("ray-job").experiment_id])
    assert run.data.tags["run_folder"] == str(out)
    assert_complete_record(mlflow_server, run.info.run_id)
    assert json.loads((out / "tracking.json").read_text())["run_id"] == run.info.run_id


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
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265", "cluster.train_workers=3")
    user = ["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265", "cluster.train_workers=3",
            "cluster.nodes=1", "stages=[ingest]", "model.eta=0.2"]
    args = jobs.job_overrides(user, config)
    # the user's cluster choice and keys were cluster=ray's: the job is cluster=local with the shared keys' values
    assert args[:3] == ["+dataset=POLA", "stages=[ingest]", "model.eta=0.2"]
    assert args[3:-1] == [
        "cluster=local",
        "cluster.address=auto",
        "cluster.train_workers=3",
        "cluster.cpus_per_train_worker=1",
        f"dataset.path='{os.path.abspath('data/POLA')}'",
        f"output_dir='{tmp_path / 'run'}'",
        f"cluster.storage_path='{tmp_path / 'run' / 'ray_train'}'",
    ]
    assert args[-1] == f"hydra.run.dir='{tmp_path / 'run'}'"
    entry = jobs.entrypoint(args)
    assert entry.startswith("python -m kon_ray.run +dataset=POLA 'stages=[ingest]' model.eta=0.2 cluster=local ")


@pytest.mark.parametrize("debug", [[], ["debug=tiny"]])
def test_job_overrides_compose_back_into_a_local_run(tmp_path: Path, debug: list) -> None:
    """What the job will compose on the cluster: cluster=local's schema, joining its Ray, same paths, the training
    sizes of the submitted run (conf/cluster/ray.yaml's or the user's), so its train stage is keyed as that run's."""
    from kon_ray.cluster.config import LocalCluster
    from kon_ray.manifest import select
    from kon_ray.stages import stage

    user = ["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265", "cluster.cpus_per_train_worker=3",
            "cluster.nodes=1", "cluster.runtime_env_pip=true", *debug]
    config = _config(tmp_path, *user[1:])
    args = jobs.job_overrides(user, config)
    job_cfg = compose_config([a for a in args if not a.startswith("hydra.")], None)
    job_cfg.output_dir = jobs.job_args_value(args, "output_dir")
    job = load_config(job_cfg)
    assert isinstance(job.cluster, LocalCluster)
    assert job.cluster.kind == "local" and job.cluster.address == "auto"
    assert job.output_dir == str(tmp_path / "run")
    assert job.cluster.storage_path == str(tmp_path / "run" / "ray_train")
    assert (job.cluster.train_workers, job.cluster.cpus_per_train_worker) == (2, 3)
    for path in stage("train").config:  # what the train stage's key hashes: the same as the submitted run's
        assert select(job, path) == select(config, path), path


def test_s3_paths_pass_through_and_shared_paths_are_required(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265", "dataset.path=s3://b/POLA")
    with pytest.raises(ConfigError, match="output_dir .* set output_dir=s3://"):
        jobs.job_overrides([], config, require_shared=True)
    args = jobs.job_overrides([], config)
    assert jobs.job_args_value(args, "dataset.path") == "s3://b/POLA"


def test_runtime_env_forwards_no_credentials(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265")
    env = jobs.runtime_env(config, {"AWS_SECRET_ACCESS_KEY": "x", "AWS_ACCESS_KEY_ID": "y", "RAY_AUTH_TOKEN": "t",
                                    "AWS_ENDPOINT_URL_S3": "http://minio:9000"}, working_dir=tmp_path / "up")
    assert env["working_dir"] == str(tmp_path / "up")
    assert env["env_vars"] == {"AWS_ENDPOINT_URL_S3": "http://minio:9000"}
    assert "pip" not in env
    pip = jobs.runtime_env(_config(tmp_path, "cluster=ray", "cluster.address=http://h:8265",
                                   "cluster.runtime_env_pip=true"), {}, working_dir=tmp_path / "up")
    assert pip["pip"] == str(tmp_path / "up" / "requirements.lock")


def test_the_upload_is_the_allowlist_only(tmp_path: Path) -> None:
    """Whatever else lies in the project folder (data, outputs, a stray secret, git, infra state) stays here."""
    project = tmp_path / "project"
    for rel in ("kon_ray/__init__.py", "kon_ray/cluster/x.py", "conf/config.yaml", "pyproject.toml",
                "requirements.lock", "data/POLA/part.parquet", "outputs/run.log", ".env", "secrets.txt",
                ".git/config", "infra/terraform.tfstate", "mlflow.db", "kon_ray/__pycache__/x.cpython-312.pyc",
                "conf/mlflow.db", "README.md"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("x")
    staged = jobs.stage_upload(tmp_path / "job", project)
    uploaded = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    assert uploaded == ["conf/config.yaml", "kon_ray/__init__.py", "kon_ray/cluster/x.py", "pyproject.toml",
                        "requirements.lock"]
    real = jobs.stage_upload(tmp_path / "real")
    assert (real / "kon_ray" / "run.py").is_file() and (real / "conf" / "config.yaml").is_file()
    assert sorted(p.name for p in real.iterdir()) == sorted(jobs.UPLOAD)


@pytest.mark.parametrize("override", [
    "tracking.uri=https://kon:hunter2@mlflow.example.com",
    "+hydra.job.env_set.API_TOKEN=abc123",
    "+db_password=hunter2",
])
def test_an_override_carrying_a_secret_is_refused_before_submission(override: str) -> None:
    with pytest.raises(ConfigError, match="carries a secret, which would travel in clear in the Ray job's command"):
        jobs.check_no_secrets(["+dataset=POLA", override], {})
    jobs.check_no_secrets(["+dataset=POLA", "tracking.uri=https://mlflow.example.com", "model.eta=0.1"], {})


def test_a_forwarded_variable_with_a_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI carries a password"):
        jobs.check_no_secrets([], {"MLFLOW_TRACKING_URI": "https://u:pw@mlflow.example.com"})


def test_the_clients_token_settings_stay_with_the_client(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster=ray", "cluster.address=http://h:8265")
    args = jobs.job_overrides(["+dataset=POLA", "cluster.auth_token_file=/home/me/token",
                               "cluster.auth_token_secret=kon-ray-token"], config)
    assert not [a for a in args if "auth_token" in a]


# --- a remote run tracks to a server ---


@pytest.mark.parametrize("uri", [None, "sqlite:///mlflow.db", "mlruns.db", "file:///tmp/mlruns"])
def test_a_remote_run_with_a_local_tracking_file_is_refused(tmp_path: Path, monkeypatch, uri) -> None:
    from kon_ray.cluster.remote import submit

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = ["cluster=ray", "cluster.address=http://h:8265"] + ([f"tracking.uri={uri}"] if uri else [])
    config = _config(tmp_path, *overrides)
    if uri is None:  # compose_config points tracking at tmp: back to the shipped default (null)
        import dataclasses

        config = dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, uri=None))
    with pytest.raises(ConfigError, match="tracking.uri.* a file on this machine, but cluster=ray runs the pipeline"
                                          " elsewhere: set tracking.uri=http\\(s\\)://HOST:PORT") as err:
        submit(config, [])
    assert err.value.exit_code == 2


def test_a_remote_run_with_a_tracking_server_or_off_passes_the_check() -> None:
    from kon_ray.tracking.uri import check_remote_uri

    for uri in ("http://mlflow:5000", "https://mlflow.example.com",
                "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/kon"):
        check_remote_uri(uri, "ray")


# --- authentication (Ray 2.60: the client sends the token only with RAY_AUTH_MODE=token) ---


def test_the_token_comes_from_env_then_path_then_config_file_then_secret(tmp_path: Path) -> None:
    from kon_ray.cluster import auth

    file_a, file_b = tmp_path / "a", tmp_path / "b"
    file_a.write_text("from-path\n")
    file_b.write_text("from-config")
    cluster = SimpleNamespace(auth_token_file=str(file_b), auth_token_secret="kon-ray-token", region=None)
    fetch = lambda secret, region: f"from-{secret}"  # noqa: E731
    both = {"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(file_a)}
    assert auth.find_token(cluster, dict(both), fetch).value == "from-env"
    assert auth.find_token(cluster, {"RAY_AUTH_TOKEN_PATH": str(file_a)}, fetch).value == "from-path"
    found = auth.find_token(cluster, {}, fetch)
    assert (found.value, found.source) == ("from-config", f"cluster.auth_token_file ({file_b})")
    cluster.auth_token_file = None
    assert auth.find_token(cluster, {}, fetch).value == "from-kon-ray-token"
    cluster.auth_token_secret = None
    assert auth.find_token(cluster, {}, fetch) is None
    assert "from-env" not in repr(auth.find_token(cluster, dict(both), fetch))  # never in a message or log line


def test_a_missing_token_file_is_exit_5_saying_where_tokens_come_from(tmp_path: Path) -> None:
    from kon_ray.cluster import auth

    cluster = SimpleNamespace(auth_token_file=str(tmp_path / "nope"), auth_token_secret=None)
    with pytest.raises(ClusterError, match="cluster.auth_token_file .*nope: cannot read the Ray token .* set"
                                           " RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or cluster.auth_token_file") as err:
        auth.find_token(cluster, {})
    assert err.value.exit_code == 5


def test_token_mode_is_turned_on_for_the_client_only_when_a_token_is_found() -> None:
    from kon_ray.cluster import auth

    env = {"RAY_AUTH_MODE": "disabled"}
    auth.enable_client_auth(None, env)
    assert env == {"RAY_AUTH_MODE": "disabled"}
    auth.enable_client_auth(auth.Token("cluster.auth_token_file (/t)", "tok"), env)
    assert env == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "tok"}
    env = {"RAY_AUTH_TOKEN_PATH": "/t"}
    auth.enable_client_auth(auth.Token("RAY_AUTH_TOKEN_PATH (/t)", "tok"), env)
    assert env == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"}


def test_refusals_by_the_head_become_one_line_saying_where_the_token_comes_from() -> None:
    from kon_ray.cluster import auth

    missing = auth.auth_failure(RuntimeError("Authentication required: Unauthorized: Missing authentication token"),
                                "http://h:8265", None)
    assert "requires an authentication token and none was found: set RAY_AUTH_TOKEN" in str(missing)
    wrong = auth.auth_failure(RuntimeError("Authentication failed: Forbidden: Invalid authentication token"),
                              "http://h:8265", auth.Token("RAY_AUTH_TOKEN", "x"))
    assert "refused the token from RAY_AUTH_TOKEN (wrong token): set RAY_AUTH_TOKEN" in str(wrong)
    assert auth.auth_failure(ConnectionError("Failed to connect"), "http://h:8265", None) is None


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


_LEAVE = """
import os, shutil, sys
from kon_ray.cluster.jobs import leave_ray_working_dir
package = os.getcwd()
moved = leave_ray_working_dir()
shutil.rmtree(package)  # what another node's runtime-env agent does when it unpacks the package again
os.makedirs(package)
print(moved, os.getcwd(), os.path.abspath("outputs"), package in sys.path)
"""


def test_a_job_driver_leaves_the_folder_ray_may_replace(tmp_path: Path) -> None:
    """A Ray Job's driver starts in Ray's unpacked working_dir, which another node's agent sharing the temp folder
    deletes and unpacks again (the cause of issue 26's lost MLflow record): the driver moves to a folder of its own
    first, so the current folder, and every relative path, survive."""
    package = tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123"
    package.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", _LEAVE], cwd=package, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-2000:]
    moved, cwd, outputs, on_path = done.stdout.split()
    assert moved == cwd and os.path.basename(cwd).startswith("kon_ray_job_") and outputs == f"{cwd}/outputs"
    assert on_path == "True"
    elsewhere = subprocess.run([sys.executable, "-c", "from kon_ray.cluster.jobs import leave_ray_working_dir;"
                                "print(leave_ray_working_dir())"], cwd=tmp_path, capture_output=True, text=True,
                               timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert elsewhere.stdout.strip() == "None"  # anywhere else (a user's shell): nothing moves
