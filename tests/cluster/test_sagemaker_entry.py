"""The Ray bootstrap inside a SageMaker job: head selection, join commands, waiting for nodes (pure parts)."""

from __future__ import annotations

import json

import pytest

from kon_ray.cluster import sagemaker_entry as entry


def test_one_host_is_its_own_head() -> None:
    plan = entry.plan_node({"current_host": "algo-1", "hosts": ["algo-1"]})
    assert (plan.role, plan.head_host, plan.head_address) == ("head", "algo-1", "algo-1:6379")
    assert plan.start_command("10.0.0.1") == [  # the dashboard on the instance's private address, not 0.0.0.0
        "ray", "start", "--head", "--port=6379", "--dashboard-host=10.0.0.1",
        "--node-ip-address=10.0.0.1", "--disable-usage-stats",
    ]


def test_three_hosts_first_is_head_others_join_it() -> None:
    hosts = ["algo-1", "algo-2", "algo-3"]
    head = entry.plan_node({"current_host": "algo-1", "hosts": hosts})
    worker = entry.plan_node({"current_host": "algo-3", "hosts": hosts})
    assert head.role == "head" and worker.role == "worker"
    assert worker.head_address == "algo-1:6379" and worker.hosts == hosts
    assert worker.start_command("10.0.0.3", "10.0.0.1") == [
        "ray", "start", "--address=10.0.0.1:6379", "--node-ip-address=10.0.0.3", "--disable-usage-stats",
    ]


def test_head_is_the_first_host_as_given_even_when_current_is_listed_first_elsewhere() -> None:
    rc = {"current_host": "algo-1", "hosts": ["algo-2", "algo-1", "algo-3"], "network_interface_name": "eth0"}
    plan = entry.plan_node(rc)
    assert plan.role == "worker" and plan.head_host == "algo-2"
    assert entry.plan_node(dict(rc, current_host="algo-2")).role == "head"


@pytest.mark.parametrize(
    "rc", [{}, {"current_host": "algo-1", "hosts": []}, {"current_host": "x", "hosts": ["algo-1"]}]
)
def test_bad_resource_configs_are_refused(rc) -> None:
    with pytest.raises(ValueError):
        entry.plan_node(rc)


def test_overrides_from_environment_or_hyperparameters() -> None:
    hp = {"kon_overrides": json.dumps(["+dataset=POLA", "stages=[ingest]"])}
    assert entry.run_overrides({}, hp) == ["+dataset=POLA", "stages=[ingest]"]
    assert entry.run_overrides({"KON_OVERRIDES": '["+dataset=CLIE"]'}, hp) == ["+dataset=CLIE"]
    with pytest.raises(ValueError):
        entry.run_overrides({}, {"kon_overrides": '{"a": 1}'})


def test_the_head_runs_a_run_or_a_sweep_and_nothing_else() -> None:
    assert entry.run_module({}) == "kon_ray.run"
    assert entry.run_module({"kon_module": "kon_ray.sweep"}) == "kon_ray.sweep"
    assert entry.pipeline_command(["a=1"], "kon_ray.sweep")[1:] == ["-m", "kon_ray.sweep", "a=1"]
    with pytest.raises(ValueError, match=r"^kon_module must be one of kon_ray.run, kon_ray.sweep, got 'os'$"):
        entry.run_module({"kon_module": "os"})


def test_wait_for_hosts_returns_once_all_joined_and_names_the_missing_ones_otherwise() -> None:
    hosts = {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2", "algo-3": "10.0.0.3"}
    seen = iter([["10.0.0.1"], ["10.0.0.1", "10.0.0.3"], list(hosts.values())])
    assert entry.wait_for_hosts(hosts, lambda: next(seen), 60, sleep=lambda s: None) == 3
    ticks = iter(range(0, 1000, 100))
    with pytest.raises(RuntimeError, match=r"^1 of 3 Ray nodes joined within 250 s; not joined: algo-2 \(10.0.0.2\),"
                                           r" algo-3 \(10.0.0.3\) \(joined: 10.0.0.1\)"):
        entry.wait_for_hosts(hosts, lambda: ["10.0.0.1"], 250, sleep=lambda s: None, clock=lambda: next(ticks))


def test_overrides_naming_opt_ml_are_read_under_the_configured_root() -> None:
    hp = {"kon_overrides": json.dumps(["dataset.path='/opt/ml/input/data/data'", "output_dir='s3://b/run'"])}
    assert entry.run_overrides({}, hp) == ["dataset.path='/opt/ml/input/data/data'", "output_dir='s3://b/run'"]
    assert entry.run_overrides({}, hp, "/tmp/x/opt_ml") == ["dataset.path='/tmp/x/opt_ml/input/data/data'",
                                                            "output_dir='s3://b/run'"]


def test_the_rehearsal_settings_come_from_the_environment_and_default_to_sagemakers() -> None:
    assert entry.Settings.from_environ({}) == entry.Settings()
    assert entry.Settings().path(entry.FAILURE_FILE) == entry.Path("/opt/ml/output/failure")
    got = entry.Settings.from_environ({"KON_SM_ROOT": "/r", "KON_SM_HOST_ADDRESSES": '{"algo-1": "127.0.0.11"}',
                                       "KON_RAY_PORT": "4000", "KON_RAY_START_ARGS": "--num-cpus=2 --temp-dir=/t",
                                       "KON_RAY_JOIN_TIMEOUT_S": "15"})
    assert (got.path(entry.RESOURCE_CONFIG), got.address("algo-1"), got.port, got.start_args, got.join_timeout_s) == (
        entry.Path("/r/input/config/resourceconfig.json"), "127.0.0.11", 4000, ("--num-cpus=2", "--temp-dir=/t"), 15.0)
    with pytest.raises(ValueError, match="has no address for host 'algo-9'"):
        got.address("algo-9")


def test_head_runs_the_pipeline_writes_its_error_line_and_stops_its_node(monkeypatch, tmp_path) -> None:
    """The head's sequence with the processes recorded instead of run (Ray itself is not started here; the
    rehearsal in test_cloud_rehearsal.py starts it)."""
    import types

    started, stopped, ran = [], [], []

    class Node:
        def __init__(self, command):
            started.append(list(command))

        def exited(self):
            return None

        def stop(self):
            stopped.append(True)

    monkeypatch.setattr(entry, "port_open", lambda *a, **k: True)
    monkeypatch.setattr(entry, "wait_for_hosts", lambda *a, **k: 2)
    monkeypatch.setattr(entry, "run_pipeline", lambda overrides, env, module: ran.append(
        (module, overrides, env["RAY_ADDRESS"])) or (3, "data error: /d/part-0.parquet is not a Parquet file"))
    monkeypatch.setitem(__import__("sys").modules, "ray", types.SimpleNamespace(init=lambda **k: None,
                                                                               shutdown=lambda: None))
    settings = entry.Settings(root=tmp_path, addresses={"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"},
                              start_args=("--num-cpus=2",))
    plan = entry.plan_node({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})
    assert entry.run_head(plan, ["+dataset=POLA"], settings, start=Node, module="kon_ray.sweep") == 3  # its own code
    assert started == [["ray", "start", "--head", "--port=6379", "--dashboard-host=10.0.0.1",
                        "--node-ip-address=10.0.0.1", "--disable-usage-stats", "--num-cpus=2"]]
    assert ran == [("kon_ray.sweep", ["+dataset=POLA"], "10.0.0.1:6379")] and stopped == [True]
    assert (tmp_path / "output" / "failure").read_text() == "data error: /d/part-0.parquet is not a Parquet file"


def test_the_last_error_line_of_the_run_is_kept() -> None:
    class Proc:
        stdout = iter(["12:00:01 INFO kon_ray.pipeline: stage ingest: started\n",
                       "12:00:02 ERROR kon_ray.run: data error: bad file\n", "done\n"])

        def wait(self):
            return 3

    assert entry.run_pipeline(["x"], {}, popen=lambda *a, **k: Proc()) == (3, "data error: bad file")


def test_every_instance_reads_the_token_and_turns_token_mode_on(tmp_path) -> None:
    env = {"KON_RAY_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:t", "RAY_AUTH_TOKEN": "old"}
    asked = []
    path = entry.enable_token_auth(env, fetch=lambda s: asked.append(s) or "s3cr3t\n", token_file=tmp_path / "tok")
    assert asked == [env["KON_RAY_TOKEN_SECRET"]]
    assert path.read_text() == "s3cr3t" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(path)
    assert "RAY_AUTH_TOKEN" not in env  # the file is the only source: the value is in no process environment


def test_an_instance_without_the_token_secret_refuses_to_start_ray(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="KON_RAY_TOKEN_SECRET is not set.*refusing to start Ray"):
        entry.enable_token_auth({}, fetch=lambda s: "x", token_file=tmp_path / "tok")


def test_the_token_is_read_from_secrets_manager(moto_endpoint, tmp_path) -> None:
    import boto3

    from kon_ray.cluster import auth

    arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name="kon-ray-entry-token", SecretString="tok-123")["ARN"]
    env = {"KON_RAY_TOKEN_SECRET": arn}
    path = entry.enable_token_auth(env, token_file=tmp_path / "auth_token")
    assert path.read_text() == "tok-123"
    with pytest.raises(RuntimeError, match="cannot read the Ray token from the Secrets Manager secret nope"):
        entry.enable_token_auth({"KON_RAY_TOKEN_SECRET": "nope"}, token_file=tmp_path / "t2")
    assert auth.secret_value(arn) == "tok-123"
