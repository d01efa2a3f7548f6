"""cluster=ec2: a Ray cluster on EC2 from Ray's cluster launcher, then the run as a Ray Job on it.

1. Render cluster/ec2.yaml (cluster.cluster_yaml) with the conf/cluster/ec2.yaml values and check it against
   Ray's own schema (ray/autoscaler/ray-schema.json), before anything touches AWS. Rendering fails closed: without
   the instance profile, security group, subnet, KMS key and token secret from infra/ it refuses (exit 2) rather
   than let Ray fall back to its defaults (EC2/S3 full access, SSH from anywhere, the default VPC). Every node gets
   IMDSv2 only, a root volume encrypted with the project key, and tags on everything RunInstances creates
   (instance, volume, network interface, spot request), which the head's IAM policy requires
   (infra/modules/iam: aws:RequestTag/ray-cluster-name); every node reads the Ray token from Secrets Manager and
   starts Ray with token authentication on.
2. `ray get-head-ip <rendered>`; when no head answers, `ray up -y <rendered>` (minutes), then ask again.
3. Reach the Jobs API: cluster.address if set; else through `ray dashboard` (an SSH tunnel to localhost) with
   cluster.port_forward=true, the default (the head binds its dashboard to 127.0.0.1); else http://HEAD_IP:8265
   (the head binds 0.0.0.0; the security group must let you reach 8265; the token still guards it).
4. Submit as for cluster=ray with the head's token (kon_ray/cluster/auth.py; the same secret, read by the
   submitting principal, when no local token is set); the data and the run folder must be s3://.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import yaml

from kon_ray.cluster.auth import WHERE, Token, find_token
from kon_ray.cluster.config import Ec2Cluster, of_kind
from kon_ray.config import CONF_DIR, KonConfig
from kon_ray.errors import ClusterError, ConfigError
from kon_ray.net import free_port, wait_for_port

log = logging.getLogger(__name__)

PROJECT_DIR = CONF_DIR.parent
CLUSTER_TAG = "ray-cluster-name"  # Ray's own tag (TAG_RAY_CLUSTER_NAME); the head's IAM conditions name it
# What RunInstances creates and can tag at launch; spot requests only for spot workers.
TAGGED_RESOURCES = ("instance", "volume", "network-interface")
SPOT_RESOURCE = "spot-instances-request"
# `python -m kon_ray.cluster.auth` writes the secret's token to ~/.ray/auth_token; Ray reads it in token mode.
TOKEN_PREFIX = "python -m kon_ray.cluster.auth {secret} {region} && export RAY_AUTH_MODE=token && "
HEAD_TYPE = "ray.head.default"
WORKER_TYPE = "ray.worker.default"
RENDERED_DIR = Path("outputs") / "cluster"

Runner = Callable[..., subprocess.CompletedProcess]


def load_template(path: str) -> Dict[str, Any]:
    template = Path(path) if os.path.isabs(path) else PROJECT_DIR / path
    if not template.is_file():
        raise ConfigError(f"cluster.cluster_yaml: {template} does not exist; point it at a Ray cluster-launcher YAML")
    try:
        return yaml.safe_load(template.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cluster.cluster_yaml: {template} is not valid YAML ({str(exc).splitlines()[0]})") from None


def ecr_registry(image: str) -> Optional[str]:
    """The ECR registry host of an image (ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo:tag), None if not ECR."""
    host = image.split("/", 1)[0]
    return host if ".dkr.ecr." in host and host.endswith(".amazonaws.com") else None


def render(cluster: Ec2Cluster, template: Dict[str, Any]) -> Dict[str, Any]:
    """The template with the config's values in place; refuses (ConfigError) when infra's values are missing."""
    cluster.check_launch()
    cfg = copy.deepcopy(template)
    region = cluster.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("cluster.region is not set (nor AWS_DEFAULT_REGION): set cluster.region=eu-west-1")
    cfg["cluster_name"] = cluster.cluster_name
    cfg["max_workers"] = cluster.max_workers
    cfg["idle_timeout_minutes"] = cluster.idle_timeout_minutes
    cfg.setdefault("provider", {})["region"] = region
    cfg["provider"].pop("availability_zone", None)
    cfg.setdefault("auth", {})["ssh_user"] = cluster.ssh_user
    docker = cfg.setdefault("docker", {})
    docker["image"] = cluster.image
    docker.setdefault("container_name", "kon_ray")
    docker["pull_before_run"] = True
    registry = ecr_registry(cluster.image or "")
    cfg["initialization_commands"] = (
        [
            f"aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin {registry}"
        ]
        if registry
        else []
    )
    types = cfg.get("available_node_types", {})
    if HEAD_TYPE not in types or WORKER_TYPE not in types:
        raise ConfigError(
            f"cluster.cluster_yaml must define available_node_types {HEAD_TYPE} and {WORKER_TYPE}"
        )
    cfg["head_node_type"] = HEAD_TYPE
    head, worker = types[HEAD_TYPE], types[WORKER_TYPE]
    head["node_config"]["InstanceType"] = cluster.head_instance_type
    worker["node_config"]["InstanceType"] = cluster.instance_type
    worker["min_workers"] = cluster.min_workers
    worker["max_workers"] = cluster.max_workers
    head_profile = cluster.head_instance_profile_arn or cluster.instance_profile_arn
    for node, profile in ((head["node_config"], head_profile), (worker["node_config"], cluster.instance_profile_arn)):
        node["IamInstanceProfile"] = {"Arn": profile}
        node["SecurityGroupIds"] = [cluster.security_group_id]
        node["SubnetIds"] = [cluster.subnet_id]
        # IMDSv2 only; hop limit 2 so that the container (one hop further) still reaches the instance role
        node["MetadataOptions"] = {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2}
        for mapping in node.setdefault("BlockDeviceMappings", [{"DeviceName": "/dev/sda1", "Ebs": {}}]):
            mapping.setdefault("Ebs", {}).update(Encrypted=True, KmsKeyId=cluster.kms_key_id)
    _set_or_drop(
        worker["node_config"], "InstanceMarketOptions", {"MarketType": "spot"} if cluster.spot_workers else None
    )
    head["node_config"].pop("InstanceMarketOptions", None)  # the head is always on-demand
    head["node_config"]["TagSpecifications"] = tag_specifications(cluster.cluster_name, spot=False)
    worker["node_config"]["TagSpecifications"] = tag_specifications(cluster.cluster_name, spot=cluster.spot_workers)
    prefix = TOKEN_PREFIX.format(secret=shlex.quote(cluster.auth_token_secret or ""), region=region)
    dashboard_host = "127.0.0.1" if cluster.port_forward and not cluster.address else "0.0.0.0"
    cfg["head_start_ray_commands"] = [
        _with_token(command, prefix).replace("--dashboard-host=127.0.0.1", f"--dashboard-host={dashboard_host}")
        for command in cfg.get("head_start_ray_commands", [])
    ]
    cfg["worker_start_ray_commands"] = [_with_token(c, prefix) for c in cfg.get("worker_start_ray_commands", [])]
    return cfg


def tag_specifications(cluster_name: str, spot: bool) -> List[Dict[str, Any]]:
    """RunInstances TagSpecifications: the cluster tag on every resource launched (Ray adds its own node tags to
    the instance's), as the head's IAM policy requires of each."""
    tags = [{"Key": CLUSTER_TAG, "Value": cluster_name}, {"Key": "project", "Value": "kon_ray"}]
    kinds = TAGGED_RESOURCES + ((SPOT_RESOURCE,) if spot else ())
    return [{"ResourceType": kind, "Tags": [dict(t) for t in tags]} for kind in kinds]


def _with_token(command: str, prefix: str) -> str:
    """`ray start ...` preceded by fetching the token and turning token mode on (same shell, so it applies)."""
    if "ray start" not in command:
        return command
    head, _, rest = command.partition("ray start")
    return f"{head}{prefix}ray start{rest}"


def _set_or_drop(node: Dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        node.pop(key, None)
    else:
        node[key] = value


def validate(cfg: Dict[str, Any]) -> None:
    """Check a cluster config against Ray's own schema; a ConfigError naming the bad field."""
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    try:
        jsonschema.validate(cfg, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ConfigError(f"cluster.cluster_yaml: field {where}: {exc.message[:300]}") from None


def write_rendered(cfg: Dict[str, Any], folder: Path = RENDERED_DIR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg['cluster_name']}.yaml"
    header = "# Rendered by kon_ray from cluster/ec2.yaml and conf/cluster/ec2.yaml; edit those, not this file.\n"
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return path


def ray_cli() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def up_command(rendered: Path) -> List[str]:
    # --no-config-cache: always apply the freshly rendered file; -y: no prompt (the run is non-interactive).
    return [ray_cli(), "up", "-y", "--no-config-cache", "--disable-usage-stats", str(rendered)]


def head_ip_command(rendered: Path) -> List[str]:
    return [ray_cli(), "get-head-ip", str(rendered)]


def dashboard_command(rendered: Path, port: int) -> List[str]:
    # `ray dashboard` keeps an SSH tunnel from localhost:port to the head's dashboard open while it runs.
    return [ray_cli(), "dashboard", "--port", str(port), str(rendered)]


def head_ip(rendered: Path, runner: Runner = subprocess.run) -> Optional[str]:
    done = runner(head_ip_command(rendered), capture_output=True, text=True)
    if done.returncode != 0:
        return None
    lines = [line.strip() for line in (done.stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def ensure_up(rendered: Path, runner: Runner = subprocess.run) -> str:
    """The head's IP, bringing the cluster up first when no head answers."""
    ip = head_ip(rendered, runner)
    if ip:
        log.info("EC2 Ray cluster is up: head %s", ip)
        return ip
    log.info("no head for %s: running %s (takes minutes)", rendered, " ".join(up_command(rendered)))
    done = runner(up_command(rendered))
    if done.returncode != 0:
        raise ClusterError(
            f"`ray up` failed (exit {done.returncode}) for {rendered}: see its output above; check the AWS"
            " credentials, cluster.region and the Terraform outputs in conf/cluster/ec2.yaml"
        )
    ip = head_ip(rendered, runner)
    if not ip:
        raise ClusterError(f"`ray up` finished but `ray get-head-ip {rendered}` finds no head")
    return ip


def submit_ec2(config: KonConfig, overrides: Sequence[str], runner: Runner = subprocess.run) -> int:
    """A run on the EC2 cluster: brought up if no head answers, then submitted to it as for cluster=ray."""
    # deferred: Ray's job client stays off the EC2 plan's path (and tests replace jobs.submit_run)
    from kon_ray.cluster.jobs import submit_run

    return on_head(config, lambda address, token: submit_run(config, overrides, address, require_shared=True,
                                                             token=token), runner)


def on_head(config: KonConfig, send: Callable[[str, Token], int], runner: Runner = subprocess.run) -> int:
    """`send(address, token)` to the head's Jobs API once the cluster is up (a run, or a whole sweep as one job:
    kon_ray/sweep/job.py): the rendered template validated and the token found before `ray up`, the address
    cluster.address, the head's IP, or a `ray dashboard` tunnel (cluster.port_forward)."""
    cluster = of_kind(config.cluster, Ec2Cluster)
    cfg = render(cluster, load_template(cluster.cluster_yaml))
    validate(cfg)
    token = find_token(cluster)  # before `ray up`: the head will refuse a client without it
    if token is None:
        raise ClusterError(f"cluster=ec2 starts its head with token authentication and no token was found: {WHERE}")
    rendered = write_rendered(cfg)
    ip = ensure_up(rendered, runner)
    if cluster.address:
        return send(cluster.address, token)
    if not cluster.port_forward:
        return send(f"http://{ip}:8265", token)
    port = free_port()
    tunnel = subprocess.Popen(dashboard_command(rendered, port))
    try:
        if not wait_for_port(port, 60):
            raise ClusterError(
                f"`ray dashboard` did not open localhost:{port} within 60 s: check SSH access to the head"
                " (security group port 22, auth.ssh_user)"
            )
        return send(f"http://127.0.0.1:{port}", token)
    finally:
        tunnel.terminate()
        try:
            tunnel.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tunnel.kill()
