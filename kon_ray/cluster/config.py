"""Config schema for where Ray runs (conf/cluster/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kon_ray.errors import ConfigError

CLUSTER_KINDS = ("local", "ray", "ec2", "sagemaker")


@dataclass(frozen=True)
class ClusterConfig:
    kind: str = "local"
    address: Optional[str] = None  # local: connect to this Ray instead of starting one; ray/ec2: http://HEAD:8265
    num_cpus: Optional[int] = None  # local Ray's CPUs (None = all cores)
    object_store_gb: Optional[float] = None  # local Ray's object store (None = Ray's default, 30% of memory)
    train_workers: int = 2
    cpus_per_train_worker: int = 1
    data_cpu_reserve: int = 1  # logical CPUs kept free for Ray Data while Ray Train runs
    storage_path: Optional[str] = None  # Ray Train checkpoints; must be shared (s3://) on multi-node clusters

    def __post_init__(self) -> None:
        if self.kind not in CLUSTER_KINDS:
            raise ConfigError(f"cluster.kind must be one of {', '.join(CLUSTER_KINDS)}, got {self.kind!r}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"cluster.num_cpus must be >= 1, got {self.num_cpus}")
        if self.object_store_gb is not None and self.object_store_gb <= 0:
            raise ConfigError(f"cluster.object_store_gb must be > 0, got {self.object_store_gb}")
        if self.train_workers < 1:
            raise ConfigError(f"cluster.train_workers must be >= 1, got {self.train_workers}")
        if self.cpus_per_train_worker < 1:
            raise ConfigError(f"cluster.cpus_per_train_worker must be >= 1, got {self.cpus_per_train_worker}")
        if self.data_cpu_reserve < 0:
            raise ConfigError(f"cluster.data_cpu_reserve must be >= 0, got {self.data_cpu_reserve}")
