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


def test_wait_for_nodes_returns_once_all_joined_and_times_out_otherwise() -> None:
    counts = iter([1, 2, 3])
    assert entry.wait_for_nodes(3, lambda: next(counts), 60, sleep=lambda s: None) == 3
    ticks = iter(range(0, 1000, 100))
    with pytest.raises(RuntimeError, match="only 1 of 3 Ray nodes joined within 250 s"):
        entry.wait_for_nodes(3, lambda: 1, 250, sleep=lambda s: None, clock=lambda: next(ticks))


def test_head_runs_the_pipeline_and_stops_ray(monkeypatch, tmp_path) -> None:
    """The head's sequence with the processes recorded instead of run (Ray itself is not started here)."""
    import subprocess
    import types

    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(entry.socket, "gethostbyname", lambda host: "10.0.0.1")
    monkeypatch.setattr(entry, "wait_for_nodes", lambda *a, **k: 2)
    fake_ray = types.SimpleNamespace(init=lambda **k: None, shutdown=lambda: None)
    monkeypatch.setitem(__import__("sys").modules, "ray", fake_ray)
    plan = entry.plan_node({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})
    assert entry.run_head(plan, ["+dataset=POLA"], run=run) == 0
    assert calls[0][:3] == ["ray", "start", "--head"]
    assert calls[1][1:] == ["-m", "kon_ray.run", "+dataset=POLA"]
    assert calls[2] == ["ray", "stop"]


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
