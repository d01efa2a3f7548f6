"""Running beyond this machine: `kon_ray.run.main` calls `submit` when cluster.kind is not local.

| cluster.kind | what happens                                                                          |
|--------------|---------------------------------------------------------------------------------------|
| ray          | submit the run as a Ray Job to cluster.address (kon_ray/cluster/jobs.py)               |
| ec2          | `ray up` the cluster from cluster/ec2.yaml if it is not up, then submit as for ray     |
|              | (kon_ray/cluster/ec2.py)                                                               |
| sagemaker    | a SageMaker training job running Ray across its instances (kon_ray/cluster/sagemaker.py)|

Each returns the run's exit code; misconfiguration raises ConfigError (2), cluster failures ClusterError (5).
Before anything is submitted: a local-file tracking store is refused (the run would track nowhere; see
kon_ray/tracking/uri.py), and each kind authenticates to its Ray with the head's token (kon_ray/cluster/auth.py).
"""

from __future__ import annotations

from typing import Sequence

from kon_ray.cluster.config import Ec2Cluster, RayCluster, SageMakerCluster
from kon_ray.cluster.ec2 import submit_ec2
from kon_ray.cluster.sagemaker import submit_sagemaker
from kon_ray.config import KonConfig
from kon_ray.tracking.uri import check_remote_uri


def submit(config: KonConfig, overrides: Sequence[str]) -> int:
    cluster = config.cluster
    if config.tracking.enabled:

        check_remote_uri(config.tracking.uri, cluster.kind)
    if isinstance(cluster, RayCluster):
        # deferred: Ray's job client, only for a Ray cluster (and tests replace jobs.submit_run)
        from kon_ray.cluster.jobs import submit_run

        cluster.check_shared_storage(config.output_dir)
        return submit_run(config, overrides, cluster.address or "")
    if isinstance(cluster, Ec2Cluster):

        cluster.check_shared_storage(config.output_dir)
        return submit_ec2(config, overrides)
    if isinstance(cluster, SageMakerCluster):

        return submit_sagemaker(config, overrides)
    raise AssertionError(f"submit called for cluster.kind={cluster.kind!r}")  # run.main handles local
