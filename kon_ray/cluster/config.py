"""Config schemas for where Ray runs (conf/cluster/): one frozen dataclass per kind of cluster.

`ClusterConfig` holds what every kind has (its kind, the Ray Train sizing and where Ray Train checkpoints);
`LocalCluster`, `RayCluster`, `Ec2Cluster` and `SageMakerCluster` add only the keys that kind reads, and each
conf/cluster/<kind>.yaml validates against its own (`defaults: [base_cluster_<kind>]`), so a key of another kind
is an unknown key that names the kind it belongs to (kon_ray/config.py). `KonConfig.cluster` is typed with the
base: Hydra merges the chosen kind's schema into it (OmegaConf accepts a subclass into a base-typed field) and
`load_config` returns that kind's dataclass; code that runs for one kind takes that dataclass (`of_kind`).
Every error names the key and what to set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Dict, Optional, Sequence, Type, TypeVar

from omegaconf import MISSING

from kon_ray.errors import ConfigError

CLUSTER_KINDS = ("local", "ray", "ec2", "sagemaker")

# Keys without which a cloud cluster would fall back to Ray's or AWS's permissive defaults: {key: terraform output}
EC2_REQUIRED = {
    "instance_profile_arn": "ray_node_instance_profile_arn",
    "security_group_id": "ray_security_group_id",
    "subnet_id": "ray_subnet_id",
    "kms_key_id": "kms_key_arn",
    "auth_token_secret": "ray_token_secret_arn",
}
SAGEMAKER_REQUIRED = {
    "security_group_id": "ray_security_group_id",
    "subnet_id": "ray_subnet_id",
    "kms_key_id": "kms_key_arn",
    "auth_token_secret": "ray_token_secret_arn",
}

# arn:aws:iam::123456789012:role/path/name (also the aws-cn / aws-us-gov partitions)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
INSTANCE_PROFILE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]{1,512}$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
# a Secrets Manager secret: its ARN, or its name (letters, digits and /_+=.@-)
SECRET_ID = re.compile(r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+|[\w/+=.@-]{1,512})$")
KMS_KEY = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/+=.@-]+$")
SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
# SageMaker training job names: 1-63 chars, alphanumerics and hyphens, starting alphanumeric
JOB_NAME_PREFIX = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,39}$")


@dataclass(frozen=True)
class ClusterConfig:
    """What every kind of cluster has. Never composed on its own: conf/cluster/<kind>.yaml picks a kind's schema."""

    kind: str = MISSING  # local | ray | ec2 | sagemaker: each kind's schema sets its own
    train_workers: int = 2  # Ray Train workers per population
    cpus_per_train_worker: int = 1
    storage_path: Optional[str] = None  # Ray Train checkpoints; must be shared (s3://) on multi-node clusters

    def __post_init__(self) -> None:
        if self.kind not in CLUSTER_KINDS:
            raise ConfigError(f"cluster.kind must be one of {', '.join(CLUSTER_KINDS)}, got {self.kind!r}")
        chosen = next((kind for kind, schema in CLUSTER_SCHEMAS.items() if schema is type(self)), None)
        if chosen is None:
            raise ConfigError(
                f"cluster: {type(self).__name__} is not a kind's schema; start conf/cluster/<name>.yaml with"
                f" defaults: [base_cluster_<kind>], one of {', '.join(CLUSTER_KINDS)}"
            )
        if self.kind != chosen:
            raise ConfigError(
                f"cluster.kind is {self.kind!r} but the config composed is cluster={chosen}'s:"
                f" choose the kind with cluster={self.kind}, not cluster.kind"
            )
        if self.train_workers < 1:
            raise ConfigError(f"cluster.train_workers must be >= 1, got {self.train_workers}")
        if self.cpus_per_train_worker < 1:
            raise ConfigError(f"cluster.cpus_per_train_worker must be >= 1, got {self.cpus_per_train_worker}")
        if self.storage_path is not None and not str(self.storage_path).strip():
            raise ConfigError("cluster.storage_path is empty; set an s3:// prefix or null")
        self._check()

    def _check(self) -> None:
        """The kind's own keys (each schema overrides it)."""

    def node_count(self) -> Optional[int]:
        """How many Ray nodes this cluster may have (None when unknown)."""
        return None

    def check_shared_storage(self, run_dir: str) -> None:
        """Ray Train checkpoints must be on shared storage when the run may use more than one node.

        `cluster.storage_path` null means <run folder>/ray_train, shared only when the run folder is s3://.
        """
        nodes = self.node_count()
        if nodes is None or nodes <= 1:
            return
        path = self.storage_path or run_dir
        if not str(path).startswith("s3://"):
            key = "cluster.storage_path" if self.storage_path else "cluster.storage_path (null: the run folder)"
            raise ConfigError(
                f"{key} is {path!r}, a local path, but cluster={self.kind} may run on {nodes} nodes: Ray Train"
                " checkpoints need shared storage; set cluster.storage_path=s3://BUCKET/PREFIX"
            )


@dataclass(frozen=True)
class LocalCluster(ClusterConfig):
    """cluster=local: a Ray started by the run on this machine, or one it joins (cluster.address)."""

    kind: str = "local"
    # connect to this Ray instead of starting one ("auto" inside a Ray Job or a SageMaker job)
    address: Optional[str] = None
    num_cpus: Optional[int] = None  # the started Ray's CPUs (None = all cores)
    object_store_gb: Optional[float] = None  # the started Ray's object store (None = Ray's default, 30% of memory)
    data_cpu_reserve: int = 1  # logical CPUs the started Ray has beyond num_cpus, for Ray Data while Ray Train runs

    def _check(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"cluster.num_cpus must be >= 1, got {self.num_cpus}")
        if self.object_store_gb is not None and self.object_store_gb <= 0:
            raise ConfigError(f"cluster.object_store_gb must be > 0, got {self.object_store_gb}")
        if self.data_cpu_reserve < 0:
            raise ConfigError(f"cluster.data_cpu_reserve must be >= 0, got {self.data_cpu_reserve}")

    def node_count(self) -> Optional[int]:
        return 1


@dataclass(frozen=True)
class RayCluster(ClusterConfig):
    """cluster=ray: an existing Ray cluster; the run is submitted as a Ray Job (kon_ray/cluster/jobs.py)."""

    kind: str = "ray"
    address: Optional[str] = None  # required: the head's dashboard / Jobs API, http://HEAD:8265
    nodes: Optional[int] = None  # the cluster's node count if known (>1 requires s3:// storage)
    runtime_env_pip: bool = False  # true: the job installs requirements.lock (slow); false: the image has the deps
    job_timeout_s: Optional[int] = None  # stop the job after this many seconds (None = no limit)
    # Ray's token authentication (kon_ray/cluster/auth.py): a file holding the head's token, read when neither
    # $RAY_AUTH_TOKEN nor $RAY_AUTH_TOKEN_PATH is set; else the Secrets Manager secret (name or ARN) holding it
    auth_token_file: Optional[str] = None
    auth_token_secret: Optional[str] = None
    region: Optional[str] = None  # the secret's AWS region (None = $AWS_DEFAULT_REGION / the profile's)

    def _check(self) -> None:
        _check_job_timeout(self.job_timeout_s)
        if self.nodes is not None and self.nodes < 1:
            raise ConfigError(f"cluster.nodes must be >= 1, got {self.nodes}")
        _check_region(self.region)
        _check_token_sources(self.auth_token_file, self.auth_token_secret)
        if not self.address:
            raise ConfigError(
                "cluster.address is required with cluster=ray: the head's Jobs API, e.g."
                " cluster.address=http://HEAD:8265"
            )
        _check_http_address(self.address)

    def node_count(self) -> Optional[int]:
        return self.nodes


@dataclass(frozen=True)
class Ec2Cluster(ClusterConfig):
    """cluster=ec2: a Ray cluster launched by `ray up` (kon_ray/cluster/ec2.py), then used as cluster=ray."""

    kind: str = "ec2"
    # the head's Jobs API, http://HEAD:8265; None: through `ray dashboard` or `ray get-head-ip` (port_forward)
    address: Optional[str] = None
    runtime_env_pip: bool = False  # as for cluster=ray
    job_timeout_s: Optional[int] = None
    auth_token_file: Optional[str] = None  # as for cluster=ray
    # the Secrets Manager secret holding the token, which the nodes read at start (terraform output -raw
    # ray_token_secret_arn); also where the client looks last for its token
    auth_token_secret: Optional[str] = None
    kms_key_id: Optional[str] = None  # encrypts the nodes' root volumes (terraform output -raw kms_key_arn)
    cluster_yaml: str = "cluster/ec2.yaml"  # the cluster-launcher template, rendered with the values below
    cluster_name: str = "kon-ray"
    region: Optional[str] = None  # AWS region (None = $AWS_DEFAULT_REGION / the profile's)
    image: Optional[str] = None  # the project image, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:TAG
    head_instance_type: str = "m5.2xlarge"
    instance_type: str = "m5.4xlarge"  # the workers'
    min_workers: int = 0
    max_workers: int = 4
    idle_timeout_minutes: float = 10.0  # the autoscaler removes workers idle this long (down to min_workers)
    spot_workers: bool = False
    instance_profile_arn: Optional[str] = None  # workers: terraform output -raw ray_node_instance_profile_arn
    # the head launches and stops workers, so it has its own, wider profile (ray_head_instance_profile_arn);
    # null: the head uses instance_profile_arn too
    head_instance_profile_arn: Optional[str] = None
    security_group_id: Optional[str] = None  # terraform output -raw ray_security_group_id
    subnet_id: Optional[str] = None  # terraform output -raw ray_subnet_id (None = the default VPC's)
    ssh_user: str = "ubuntu"
    # true: reach the dashboard through `ray dashboard` (an SSH tunnel; the head binds it to 127.0.0.1);
    # false: http://HEAD_IP:8265 (the head binds it to 0.0.0.0, token-authenticated)
    port_forward: bool = True

    def _check(self) -> None:
        _check_job_timeout(self.job_timeout_s)
        _check_region(self.region)
        _check_token_sources(self.auth_token_file, self.auth_token_secret)
        _check_kms_key(self.kms_key_id)
        if self.address:
            _check_http_address(self.address)
        _check_image(self.image, "ec2")
        if self.min_workers < 0:
            raise ConfigError(f"cluster.min_workers must be >= 0, got {self.min_workers}")
        if self.max_workers < self.min_workers:
            raise ConfigError(
                f"cluster.max_workers ({self.max_workers}) must be >= cluster.min_workers ({self.min_workers})"
            )
        if self.idle_timeout_minutes < 0:
            raise ConfigError(f"cluster.idle_timeout_minutes must be >= 0, got {self.idle_timeout_minutes}")
        if self.head_instance_profile_arn is not None and not INSTANCE_PROFILE_ARN.match(
            self.head_instance_profile_arn
        ):
            raise ConfigError(
                f"cluster.head_instance_profile_arn {self.head_instance_profile_arn!r} is not an instance-profile ARN;"
                " take it from `terraform output -raw ray_head_instance_profile_arn`"
            )
        if self.instance_profile_arn is not None and not INSTANCE_PROFILE_ARN.match(self.instance_profile_arn):
            raise ConfigError(
                f"cluster.instance_profile_arn {self.instance_profile_arn!r} is not an instance-profile ARN;"
                " take it from `terraform output -raw ray_node_instance_profile_arn`"
            )
        _check_network_ids(self.security_group_id, self.subnet_id)

    def check_launch(self) -> None:
        """What `ray up` needs before kon_ray renders the cluster file (kon_ray/cluster/ec2.py): no Ray defaults."""
        _require(self, EC2_REQUIRED, "launches nodes only with the project's role, network, key and Ray token")

    def node_count(self) -> Optional[int]:
        return 1 + self.max_workers


@dataclass(frozen=True)
class SageMakerCluster(ClusterConfig):
    """cluster=sagemaker: a training job running Ray across its instances (kon_ray/cluster/sagemaker.py)."""

    kind: str = "sagemaker"
    region: Optional[str] = None  # AWS region (None = $AWS_DEFAULT_REGION / the profile's)
    image: Optional[str] = None  # the project image in ECR (AlgorithmSpecification.TrainingImage)
    role_arn: Optional[str] = None  # the SageMaker execution role (terraform output -raw sagemaker_role_arn)
    instance_type: str = "ml.m5.4xlarge"  # every instance of the job
    instance_count: int = 1
    # the job runs only inside the project's VPC, encrypted with its key, Ray token-authenticated:
    security_group_id: Optional[str] = None  # terraform output -raw ray_security_group_id
    subnet_id: Optional[str] = None  # terraform output -raw ray_subnet_id
    kms_key_id: Optional[str] = None  # the training volumes and the output (terraform output -raw kms_key_arn)
    auth_token_secret: Optional[str] = None  # the instances read the Ray token from it (ray_token_secret_arn)
    s3_input: Optional[str] = None  # the data channel (None = dataset.path when it is s3://)
    s3_output: Optional[str] = None  # s3:// prefix; the run folder is <s3_output>/<job name>/run
    job_name_prefix: str = "kon-ray"
    volume_size_gb: int = 100
    max_runtime_s: int = 24 * 3600
    spot_workers: bool = False  # managed spot training
    max_wait_s: Optional[int] = None  # with spot_workers: the total wait (>= max_runtime_s)
    poll_s: float = 15.0  # the first status poll interval; backs off up to 4x

    def _check(self) -> None:
        _check_region(self.region)
        _check_token_sources(None, self.auth_token_secret)
        _check_kms_key(self.kms_key_id)
        _check_image(self.image, "sagemaker")
        if not self.role_arn:
            raise ConfigError(
                "cluster.role_arn is required with cluster=sagemaker: the SageMaker execution role,"
                " from `terraform output -raw sagemaker_role_arn`"
            )
        if not ROLE_ARN.match(self.role_arn):
            raise ConfigError(
                f"cluster.role_arn {self.role_arn!r} is not an IAM role ARN"
                " (arn:aws:iam::<12-digit account>:role/<name>)"
            )
        if not self.instance_type.startswith("ml."):
            raise ConfigError(
                f"cluster.instance_type {self.instance_type!r} is not a SageMaker instance type (e.g. ml.m5.4xlarge)"
            )
        if self.instance_count < 1:
            raise ConfigError(f"cluster.instance_count must be >= 1, got {self.instance_count}")
        if not self.s3_output or not self.s3_output.startswith("s3://"):
            raise ConfigError(
                f"cluster.s3_output must be an s3:// prefix with cluster=sagemaker, got {self.s3_output!r};"
                " e.g. cluster.s3_output=s3://BUCKET/kon-ray"
            )
        if self.s3_input is not None and not self.s3_input.startswith("s3://"):
            raise ConfigError(f"cluster.s3_input must be an s3:// prefix, got {self.s3_input!r}")
        if not JOB_NAME_PREFIX.match(self.job_name_prefix):
            raise ConfigError(
                f"cluster.job_name_prefix {self.job_name_prefix!r}: use 1-40 letters, digits and hyphens"
            )
        if self.volume_size_gb < 1:
            raise ConfigError(f"cluster.volume_size_gb must be >= 1, got {self.volume_size_gb}")
        if self.max_runtime_s < 1:
            raise ConfigError(f"cluster.max_runtime_s must be >= 1, got {self.max_runtime_s}")
        if self.max_wait_s is not None:
            if not self.spot_workers:
                raise ConfigError("cluster.max_wait_s applies only to spot training: set cluster.spot_workers=true")
            if self.max_wait_s < self.max_runtime_s:
                raise ConfigError(
                    f"cluster.max_wait_s ({self.max_wait_s}) must be >= cluster.max_runtime_s ({self.max_runtime_s})"
                )
        if self.poll_s <= 0:
            raise ConfigError(f"cluster.poll_s must be > 0, got {self.poll_s}")
        _check_network_ids(self.security_group_id, self.subnet_id)
        # Fail closed: the job runs inside the VPC, encrypted with the project key, its Ray token-authenticated.
        _require(self, SAGEMAKER_REQUIRED, "runs only inside the project's VPC, encrypted, with Ray's token")

    def node_count(self) -> Optional[int]:
        return self.instance_count


# Each kind's schema, registered as `base_cluster_<kind>` (kon_ray/config.py) for conf/cluster/<kind>.yaml.
CLUSTER_SCHEMAS: Dict[str, Type[ClusterConfig]] = {
    "local": LocalCluster,
    "ray": RayCluster,
    "ec2": Ec2Cluster,
    "sagemaker": SageMakerCluster,
}

C = TypeVar("C", bound=ClusterConfig)


def of_kind(cluster: ClusterConfig, schema: Type[C]) -> C:
    """`cluster` as its kind's schema, for code that runs for that kind only (kon_ray/cluster/remote.py picks it)."""
    if not isinstance(cluster, schema):
        raise TypeError(f"{schema.__name__} expected, got cluster={cluster.kind}'s {type(cluster).__name__}")
    return cluster


def joined_overrides(cluster: ClusterConfig) -> list[str]:
    """The overrides of a run that a remote cluster runs itself (a Ray Job's, a SageMaker job's): cluster=local,
    joining the cluster's Ray, with the keys every kind shares as composed here (their storage_path is the
    caller's, made absolute). The user's own `cluster=`/`cluster.*` overrides are not carried: they were the
    submitting kind's."""
    shared = [f.name for f in fields(ClusterConfig) if f.name not in ("kind", "storage_path")]
    return ["cluster=local", "cluster.address=auto", *(f"cluster.{key}={getattr(cluster, key)}" for key in shared)]


# What a launcher sets itself for the run on the cluster (its data and run folders), never taken from the user's.
LAUNCHER_KEYS = ("output_dir", "dataset.path", "hydra.run.dir", "hydra.sweep.dir")


def override_key(override: str) -> str:
    """The key of a command-line override (`+model.x=1` -> `model.x`, `cluster=ray` -> `cluster`)."""
    return override.split("=", 1)[0].lstrip("+~")


def carried_overrides(overrides: Sequence[str]) -> list[str]:
    """The user's overrides that the run on a remote cluster keeps (a Ray Job's, a SageMaker job's): not the cluster
    choice or its keys (`cluster=ray`, `cluster.nodes`: the submitting kind's; `joined_overrides` sets the run's),
    nor what the launcher sets itself (LAUNCHER_KEYS)."""
    kept = []
    for override in overrides:
        key = override_key(override)
        if key not in LAUNCHER_KEYS and key != "cluster" and not key.startswith("cluster."):
            kept.append(override)
    return kept


def _require(cluster: ClusterConfig, keys: Dict[str, str], why: str) -> None:
    """A ConfigError naming every key of `keys` ({key: terraform output}) that is unset, and where to find it."""
    missing = [f"cluster.{key} (terraform output -raw {output})" for key, output in keys.items()
               if not getattr(cluster, key)]
    if missing:
        raise ConfigError(f"cluster={cluster.kind} {why}: set {', '.join(missing)}")


def _check_job_timeout(job_timeout_s: Optional[int]) -> None:
    if job_timeout_s is not None and job_timeout_s < 1:
        raise ConfigError(f"cluster.job_timeout_s must be >= 1, got {job_timeout_s}")


def _check_region(region: Optional[str]) -> None:
    if region is not None and not REGION.match(region):
        raise ConfigError(f"cluster.region {region!r} is not an AWS region name (e.g. eu-west-1)")


def _check_token_sources(auth_token_file: Optional[str], auth_token_secret: Optional[str]) -> None:
    if auth_token_file is not None and not str(auth_token_file).strip():
        raise ConfigError("cluster.auth_token_file is empty; set the path of a file holding the Ray token, or null")
    if auth_token_secret is not None and not SECRET_ID.match(auth_token_secret):
        raise ConfigError(
            f"cluster.auth_token_secret {auth_token_secret!r} is not a Secrets Manager secret name or ARN;"
            " take it from `terraform output -raw ray_token_secret_arn`"
        )


def _check_kms_key(kms_key_id: Optional[str]) -> None:
    if kms_key_id is not None and not KMS_KEY.match(kms_key_id):
        raise ConfigError(
            f"cluster.kms_key_id {kms_key_id!r} is not a KMS key ARN; take it from `terraform output -raw kms_key_arn`"
        )


def _check_image(image: Optional[str], kind: str) -> None:
    if not image:
        raise ConfigError(
            f"cluster.image is required with cluster={kind}: the project image in ECR, e.g."
            " cluster.image=123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:0.1.0"
        )


def _check_network_ids(security_group_id: Optional[str], subnet_id: Optional[str]) -> None:
    if security_group_id is not None and not SECURITY_GROUP.match(security_group_id):
        raise ConfigError(f"cluster.security_group_id {security_group_id!r} is not a security group id (sg-...)")
    if subnet_id is not None and not SUBNET.match(subnet_id):
        raise ConfigError(f"cluster.subnet_id {subnet_id!r} is not a subnet id (subnet-...)")


def _check_http_address(address: str) -> None:
    if not re.match(r"^https?://[^/\s:]+(:\d+)?/?$", address):
        raise ConfigError(
            f"cluster.address {address!r} is not the Jobs API address; use http://HEAD:8265"
            " (the dashboard port; ray:// is Ray Client, not the Jobs API)"
        )
