"""cluster=ec2 offline: the rendered launcher YAML against Ray's own schema, and the `ray up` flow's commands."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kon_ray.cluster import ec2
from kon_ray.config import load_config
from kon_ray.errors import ClusterError, ConfigError
from tests.conftest import REPO, compose_config

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:0.1.0"
PROFILE = "arn:aws:iam::123456789012:instance-profile/kon-ray-dev-ray-node"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kon-ray-dev-ray-token-AbCdEf"
# what infra/ outputs, as a user passes them (README "Running beyond one machine")
INFRA = [f"cluster.instance_profile_arn={PROFILE}", "cluster.security_group_id=sg-0123456789abcdef0",
         "cluster.subnet_id=subnet-0123456789abcdef0", f"cluster.kms_key_id={KEY}",
         f"cluster.auth_token_secret={SECRET}"]


def _config(tmp_path: Path, *overrides: str, infra=tuple(INFRA)):
    return load_config(compose_config(
        ["+dataset=POLA", "cluster=ec2", f"cluster.image={IMAGE}", *infra, *overrides], tmp_path))


def test_the_template_itself_is_valid() -> None:
    template = ec2.load_template("cluster/ec2.yaml")
    ec2.validate(template)
    for node_type in template["available_node_types"].values():  # a direct `ray up` would not be open either
        assert node_type["node_config"]["MetadataOptions"]["HttpTokens"] == "required"
        assert all(m["Ebs"]["Encrypted"] for m in node_type["node_config"]["BlockDeviceMappings"])


def test_rendered_yaml_is_valid_and_carries_the_config(tmp_path: Path) -> None:
    config = _config(
        tmp_path, "cluster.region=us-east-1", "cluster.max_workers=7", "cluster.min_workers=1",
        "cluster.instance_profile_arn=arn:aws:iam::111122223333:instance-profile/kon",
        "cluster.security_group_id=sg-0aaaabbbbccccdddd", "cluster.spot_workers=true",
        "cluster.idle_timeout_minutes=2.5",
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
    assert cfg["idle_timeout_minutes"] == 2.5
    assert head["InstanceType"] == "m5.2xlarge" and worker["node_config"]["InstanceType"] == "m5.4xlarge"
    assert head["IamInstanceProfile"] == {"Arn": "arn:aws:iam::111122223333:instance-profile/kon"}
    assert worker["node_config"]["SecurityGroupIds"] == ["sg-0aaaabbbbccccdddd"]
    assert head["SubnetIds"] == worker["node_config"]["SubnetIds"] == ["subnet-0123456789abcdef0"]
    assert worker["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert "InstanceMarketOptions" not in head
    assert cfg["initialization_commands"] == [
        "aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin"
        " 123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    ]
    path = ec2.write_rendered(cfg, tmp_path)
    assert path.name == "kon-ray.yaml"


def test_the_head_gets_its_own_instance_profile(tmp_path: Path) -> None:
    workers = "arn:aws:iam::111122223333:instance-profile/kon-node"
    head = "arn:aws:iam::111122223333:instance-profile/kon-head"
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


@pytest.mark.parametrize("missing", ["instance_profile_arn", "security_group_id", "subnet_id", "kms_key_id",
                                     "auth_token_secret"])
def test_rendering_fails_closed_without_infras_values(tmp_path: Path, missing: str) -> None:
    """No Ray defaults (EC2/S3 full access, SSH from anywhere, the default VPC, unencrypted disks, no token):
    each missing value is named with the terraform output that provides it."""
    config = _config(tmp_path, infra=[o for o in INFRA if not o.startswith(f"cluster.{missing}=")])
    with pytest.raises(ConfigError, match=f"cluster=ec2 .*cluster.{missing} \\(terraform output -raw"):
        ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))


def test_every_node_requires_imdsv2_and_encrypts_its_root_volume_with_the_project_key(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster.spot_workers=true")
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    for node_type in ("ray.head.default", "ray.worker.default"):
        node = cfg["available_node_types"][node_type]["node_config"]
        assert node["MetadataOptions"]["HttpTokens"] == "required"
        assert node["MetadataOptions"]["HttpEndpoint"] == "enabled"
        assert node["BlockDeviceMappings"], node_type
        for mapping in node["BlockDeviceMappings"]:
            assert mapping["Ebs"]["Encrypted"] is True and mapping["Ebs"]["KmsKeyId"] == KEY


def test_nodes_start_ray_with_the_token_from_secrets_manager(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    for command in (cfg["head_start_ray_commands"][-1], cfg["worker_start_ray_commands"][-1]):
        fetch, _, start = command.partition("export RAY_AUTH_MODE=token && ray start")
        assert f"python -m kon_ray.cluster.auth {SECRET} eu-west-1 &&" in fetch, command
        assert start
    head = cfg["head_start_ray_commands"][-1]
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head  # the SSH tunnel, by default
    assert config.cluster.port_forward is True
    direct = _config(tmp_path, "cluster.port_forward=false")
    direct_cfg = ec2.render(direct.cluster, ec2.load_template(direct.cluster.cluster_yaml))
    assert "--dashboard-host=0.0.0.0" in direct_cfg["head_start_ray_commands"][-1]


def test_without_a_token_nothing_is_launched(tmp_path: Path, monkeypatch) -> None:
    """The head will require the token: no `ray up` (minutes, money) for a client that could not submit."""
    from kon_ray.cluster import auth

    monkeypatch.chdir(tmp_path)
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ec2, "find_token", lambda cluster: None)
    runner = Recorder(["10.0.0.9"])
    config = _config(tmp_path, "dataset.path=s3://b/POLA", "output_dir=s3://b/runs/x")
    with pytest.raises(ClusterError, match="no token was found: set RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or"
                                           " cluster.auth_token_file") as err:
        ec2.submit_ec2(config, [], runner)
    assert err.value.exit_code == 5 and runner.calls == []
    assert auth.WHERE in str(err.value)


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
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match="cluster.storage_path .* 5 nodes"):
        config.cluster.check_shared_storage(config.output_dir)
    config.cluster.check_shared_storage("s3://b/runs/x")
    single = _config(tmp_path, "cluster.max_workers=0")
    single.cluster.check_shared_storage(config.output_dir)


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

    def fake_submit(config, overrides, address, require_shared=False, token=None):
        seen.update(address=address, require_shared=require_shared, token=token.source)
        return 0

    monkeypatch.setattr(jobs, "submit_run", fake_submit)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0k3n")
    config = _config(tmp_path, "dataset.path=s3://b/POLA", "output_dir=s3://b/runs/x", "cluster.port_forward=false")
    assert ec2.submit_ec2(config, [], Recorder(["10.0.0.9"])) == 0
    assert seen == {"address": "http://10.0.0.9:8265", "require_shared": True, "token": "RAY_AUTH_TOKEN"}
    assert (tmp_path / "outputs" / "cluster" / "kon-ray.yaml").exists()
    with pytest.raises(ConfigError, match="dataset.path .* set dataset.path=s3://"):
        jobs.job_overrides([], _config(tmp_path), require_shared=True)


# --- the rendered YAML against the head's IAM policy (infra/modules/iam/main.tf) ---------------------------------

IAM_MAIN = REPO / "infra" / "modules" / "iam" / "main.tf"


def _blocks(text: str, opener: str) -> list:
    """The bodies of every `opener {` block in HCL text (brace-matched; enough for policy documents)."""
    bodies, start = [], 0
    while (at := text.find(opener, start)) >= 0:
        brace = text.index("{", at)
        depth, i = 0, brace
        while True:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        bodies.append(text[brace + 1:i])
        start = i
    return bodies


def _strings(body: str, attribute: str) -> list:
    match = re.search(rf"\b{attribute}\s*=\s*(\[[^\]]*\]|\"[^\"]*\")", body, re.S)
    return re.findall(r'"([^"]*)"', match.group(1)) if match else []


def head_policy_statements() -> list:
    """The statements of the head's policy document (data "aws_iam_policy_document" "ray_autoscaler")."""
    text = IAM_MAIN.read_text()
    document = _blocks(text, 'data "aws_iam_policy_document" "ray_autoscaler"')
    assert document, f"{IAM_MAIN}: no ray_autoscaler policy document"
    statements = []
    for body in _blocks(document[0], "statement {"):
        conditions = [{"test": _strings(c, "test")[0], "variable": _strings(c, "variable")[0],
                       "values": _strings(c, "values"), "raw_values": re.search(r"values\s*=\s*(.*)", c).group(1)}
                      for c in _blocks(body, "condition {")]
        head = body.split("condition {", 1)[0]  # the statement's own attributes, before its conditions
        resources = head.split("resources", 1)[1] if "resources" in head else ""
        statements.append({"sid": (_strings(body, "sid") or [""])[0], "actions": _strings(body, "actions"),
                           "resources": re.findall(r":(instance|volume|network-interface|spot-instances-request)/\*",
                                                   resources),
                           "conditions": conditions})
    return statements


def _tag_conditions(statements: list) -> dict:
    """{resource type: tag key} that RunInstances requires in the request (aws:RequestTag/<key>)."""
    required = {}
    for statement in statements:
        if "ec2:RunInstances" not in statement["actions"]:
            continue
        for condition in statement["conditions"]:
            if condition["variable"].startswith("aws:RequestTag/"):
                assert condition["test"] == "StringEquals"
                assert "var.ray_cluster_name" in condition["raw_values"]  # = conf cluster.cluster_name
                for resource in statement["resources"]:
                    required[resource] = condition["variable"].split("/", 1)[1]
    return required


def _rendered_tags(node_config: dict) -> dict:
    return {spec["ResourceType"]: {t["Key"]: t["Value"] for t in spec["Tags"]}
            for spec in node_config.get("TagSpecifications", [])}


def test_every_resource_the_launcher_creates_carries_the_tag_the_head_policy_requires(tmp_path: Path) -> None:
    """Reads the head's IAM policy and the rendered YAML: every resource type whose RunInstances the policy
    conditions on aws:RequestTag/<key> = var.ray_cluster_name is tagged <key> = cluster.cluster_name on both node
    types, and everything RunInstances creates on demand (instance, volume, network interface) is such a type."""
    required = _tag_conditions(head_policy_statements())
    assert set(required) >= {"instance", "volume", "network-interface"}, required
    config = _config(tmp_path, "cluster.cluster_name=kon-ray-dev")
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    for node_type in ("ray.head.default", "ray.worker.default"):
        tags = _rendered_tags(cfg["available_node_types"][node_type]["node_config"])
        assert set(tags) == set(ec2.TAGGED_RESOURCES), (node_type, tags)
        for resource, key in required.items():
            if resource in tags:
                assert tags[resource].get(key) == "kon-ray-dev", (node_type, resource, tags[resource])
        assert set(tags) <= set(required), (
            f"{node_type}: the policy allows no tagged launch of {set(tags) - set(required)}"
        )
    # CreateTags at launch must be allowed for each tagged type too
    tag_on_launch = [s for s in head_policy_statements() if "ec2:CreateTags" in s["actions"]
                     and any(c["variable"] == "ec2:CreateAction" for c in s["conditions"])]
    assert tag_on_launch and set(ec2.TAGGED_RESOURCES) <= set(tag_on_launch[0]["resources"])


def test_spot_requests_are_tagged_and_allowed_by_the_head_policy(tmp_path: Path) -> None:
    required = _tag_conditions(head_policy_statements())
    config = _config(tmp_path, "cluster.spot_workers=true")
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    tags = _rendered_tags(cfg["available_node_types"]["ray.worker.default"]["node_config"])
    assert tags[ec2.SPOT_RESOURCE]["ray-cluster-name"] == "kon-ray"
    assert required.get(ec2.SPOT_RESOURCE) == "ray-cluster-name"
