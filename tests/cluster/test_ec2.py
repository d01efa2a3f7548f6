"""cluster=ec2 offline: the rendered launcher YAML against Ray's own schema, and the `ray up` flow's commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kon_ray.cluster import ec2
from kon_ray.config import load_config
from kon_ray.errors import ClusterError, ConfigError
from tests.conftest import compose_config

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:0.1.0"


def _config(tmp_path: Path, *overrides: str):
    return load_config(compose_config(["+dataset=POLA", "cluster=ec2", f"cluster.image={IMAGE}", *overrides], tmp_path))


def test_the_template_itself_is_valid() -> None:
    ec2.validate(ec2.load_template("cluster/ec2.yaml"))


def test_rendered_yaml_is_valid_and_carries_the_config(tmp_path: Path) -> None:
    config = _config(
        tmp_path, "cluster.region=us-east-1", "cluster.max_workers=7", "cluster.min_workers=1",
        "cluster.instance_profile_arn=arn:aws:iam::111122223333:instance-profile/kon",
        "cluster.security_group_id=sg-0aaaabbbbccccdddd", "cluster.spot_workers=true",
    )
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    ec2.validate(cfg)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cfg))  # Ray's own check, after filling in its defaults
    head = cfg["available_node_types"]["ray.head.default"]["node_config"]
    worker = cfg["available_node_types"]["ray.worker.default"]
    assert cfg["provider"]["region"] == "us-east-1"
    assert cfg["docker"]["image"] == IMAGE and cfg["docker"]["pull_before_run"] is True
    assert cfg["max_workers"] == 7 and worker["max_workers"] == 7 and worker["min_workers"] == 1
    assert head["InstanceType"] == "m5.2xlarge" and worker["node_config"]["InstanceType"] == "m5.4xlarge"
    assert head["IamInstanceProfile"] == {"Arn": "arn:aws:iam::111122223333:instance-profile/kon"}
    assert worker["node_config"]["SecurityGroupIds"] == ["sg-0aaaabbbbccccdddd"]
    assert "SubnetIds" not in head  # unset: the placeholder is removed, Ray picks the default VPC
    assert worker["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert "InstanceMarketOptions" not in head
    assert cfg["initialization_commands"] == [
        "aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin"
        " 123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    ]
    path = ec2.write_rendered(cfg, tmp_path)
    assert path.name == "kon-ray.yaml"


def test_the_head_gets_its_own_instance_profile(tmp_path: Path) -> None:
    workers, head = "arn:aws:iam::111122223333:instance-profile/kon-node", "arn:aws:iam::111122223333:instance-profile/kon-head"
    config = _config(tmp_path, f"cluster.instance_profile_arn={workers}", f"cluster.head_instance_profile_arn={head}")
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    types = cfg["available_node_types"]
    assert types["ray.head.default"]["node_config"]["IamInstanceProfile"] == {"Arn": head}
    assert types["ray.worker.default"]["node_config"]["IamInstanceProfile"] == {"Arn": workers}


def test_every_ray_port_is_pinned_inside_the_security_group_ranges() -> None:
    """The infra security group opens 6379, 8076-8080 and 10002-19999 inside the group only: Ray must not pick
    random ports for its node manager, agents or workers."""
    template = ec2.load_template("cluster/ec2.yaml")
    for command in (template["head_start_ray_commands"][-1], template["worker_start_ray_commands"][-1]):
        for flag, port in (("--object-manager-port", 8076), ("--node-manager-port", 8077),
                           ("--dashboard-agent-grpc-port", 8078), ("--runtime-env-agent-port", 8079),
                           ("--metrics-export-port", 8080), ("--min-worker-port", 10002),
                           ("--max-worker-port", 19999)):
            assert f"{flag}={port}" in command, (flag, command)


def test_on_demand_workers_drop_the_spot_options(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    assert "InstanceMarketOptions" not in cfg["available_node_types"]["ray.worker.default"]["node_config"]


def test_a_schema_violation_names_the_field(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    cfg["docker"]["pull_before_run"] = "yes"
    with pytest.raises(ConfigError, match="field docker/pull_before_run"):
        ec2.validate(cfg)


@pytest.mark.parametrize(
    "override, key",
    [
        ("cluster.image=null", "cluster.image"),
        ("cluster.max_workers=-1", "cluster.max_workers"),
        ("cluster.instance_profile_arn=kon-node", "cluster.instance_profile_arn"),
        ("cluster.security_group_id=default", "cluster.security_group_id"),
        ("cluster.region=Ireland", "cluster.region"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _config(tmp_path, override)


def test_multi_node_needs_s3_storage(tmp_path: Path) -> None:
    from kon_ray.cluster.config import check_shared_storage

    config = _config(tmp_path)
    with pytest.raises(ConfigError, match="cluster.storage_path .* 5 nodes"):
        check_shared_storage(config.cluster, config.output_dir)
    check_shared_storage(config.cluster, "s3://b/runs/x")
    single = _config(tmp_path, "cluster.max_workers=0")
    check_shared_storage(single.cluster, config.output_dir)


class Recorder:
    """Stands in for subprocess.run: records the commands, answers get-head-ip from a script."""

    def __init__(self, head_ips):
        self.head_ips, self.calls = list(head_ips), []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        if cmd[1] == "get-head-ip":
            ip = self.head_ips.pop(0)
            return subprocess.CompletedProcess(cmd, 0 if ip else 1, stdout=f"{ip}\n" if ip else "", stderr="")
        return subprocess.CompletedProcess(cmd, 0)


def test_ray_up_runs_only_when_no_head_answers(tmp_path: Path) -> None:
    rendered = tmp_path / "kon-ray.yaml"
    runner = Recorder([None, "10.0.0.5"])
    assert ec2.ensure_up(rendered, runner) == "10.0.0.5"
    assert [c[1:] for c in runner.calls] == [
        ["get-head-ip", str(rendered)],
        ["up", "-y", "--no-config-cache", "--disable-usage-stats", str(rendered)],
        ["get-head-ip", str(rendered)],
    ]
    assert runner.calls[1][0].endswith("ray")
    up_already = Recorder(["10.0.0.5"])
    assert ec2.ensure_up(rendered, up_already) == "10.0.0.5" and len(up_already.calls) == 1


def test_a_failed_ray_up_is_a_cluster_error(tmp_path: Path) -> None:
    def runner(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="")

    with pytest.raises(ClusterError, match="`ray up` failed"):
        ec2.ensure_up(tmp_path / "c.yaml", runner)


def test_submit_ec2_requires_s3_paths_and_submits_to_the_head(tmp_path: Path, monkeypatch) -> None:
    from kon_ray.cluster import jobs

    monkeypatch.chdir(tmp_path)  # the rendered YAML goes to ./outputs/cluster/
    seen = {}

    def fake_submit(config, overrides, address, require_shared=False):
        seen.update(address=address, require_shared=require_shared)
        return 0

    monkeypatch.setattr(jobs, "submit_run", fake_submit)
    config = _config(tmp_path, "dataset.path=s3://b/POLA", "output_dir=s3://b/runs/x")
    assert ec2.submit_ec2(config, [], Recorder(["10.0.0.9"])) == 0
    assert seen == {"address": "http://10.0.0.9:8265", "require_shared": True}
    assert (tmp_path / "outputs" / "cluster" / "kon-ray.yaml").exists()
    with pytest.raises(ConfigError, match="dataset.path .* set dataset.path=s3://"):
        jobs.job_overrides([], _config(tmp_path), require_shared=True)
