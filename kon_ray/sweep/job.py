"""`python -m kon_ray.sweep ... cluster=ray|ec2|sagemaker`: the whole sweep as ONE job on the cluster (README
"Sweeps").

The sweep is checked here first, as for a local one (an unknown key, a bad range: exit 2 before anything is
submitted); then the cluster runs `python -m kon_ray.sweep` with the user's overrides, less the cluster choice and
its keys, plus `cluster=local cluster.address=auto` (its driver joins the cluster's Ray: the shared stages, then
every trial, spread over its nodes) and absolute or s3:// paths for the data, the sweep folder and the cache, which
this side chose. How it gets there is the run's own path for each kind:

| cluster | the sweep's driver runs as                                                                       |
|---------|--------------------------------------------------------------------------------------------------|
| ray     | a Ray Job on cluster.address (kon_ray/cluster/jobs.py `submit_job`: upload, log stream, Ctrl-C)    |
| ec2     | the same Ray Job, on the head `ray up` brought up if none answered (kon_ray/cluster/ec2.py)       |
| sagemaker | the head instance's command in a training job (`kon_module`: kon_ray/cluster/sagemaker.py), the |
|         | data from the job's channel; the sweep folder on S3                                                 |
"""

from __future__ import annotations

import logging
import os
import shlex
from typing import List, Optional, Sequence

from kon_ray import storage
from kon_ray.cluster import sagemaker
from kon_ray.cluster.config import (
    ClusterConfig,
    Ec2Cluster,
    RayCluster,
    SageMakerCluster,
    carried_overrides,
    joined_overrides,
    override_key,
)
from kon_ray.cluster.ec2 import on_head
from kon_ray.cluster.jobs import hydra_quote, submit_job
from kon_ray.config import KonConfig
from kon_ray.errors import ConfigError
from kon_ray.tracking.names import redact_overrides
from kon_ray.tracking.uri import check_remote_uri

log = logging.getLogger(__name__)

# Set on this side for the job, never carried from the user's command line: its paths (absolute or s3://) and the
# user's own overrides for the reproduce lines.
JOB_PATH_KEYS = ("sweep.dir", "cache_dir", "sweep.submitted_overrides")
# `ray job stop` (Ctrl-C here) sends the driver SIGTERM and, by default, SIGKILL 3 s later: too soon on a busy head
# for the driver to stop Tune and end the parent run KILLED. Read by the job's supervisor, from the job's env.
STOP_GRACE = {"RAY_JOB_STOP_WAIT_TIME_S": "30"}


def sweep_job_overrides(overrides: Sequence[str], fixed: Sequence[str], config: KonConfig, sweep_dir: str,
                        data: Optional[str] = None) -> List[str]:
    """The job's `python -m kon_ray.sweep` overrides: the user's (swept keys and sweep.* included), minus the cluster
    keys and the paths, plus joining the cluster's Ray, the paths as this side resolved them (`data`: where the
    job reads the dataset, default dataset.path), and the user's unswept overrides (`fixed`) for the reproduce
    lines."""
    if data is None:
        data = config.dataset.path if storage.is_s3(config.dataset.path) else os.path.abspath(config.dataset.path)
    kept = [o for o in carried_overrides(overrides) if override_key(o) not in JOB_PATH_KEYS]
    assert config.cache_dir is not None  # the sweep's compose always sets it
    return kept + [*joined_overrides(config.cluster), f"dataset.path={hydra_quote(data)}",
                   f"cache_dir={hydra_quote(config.cache_dir)}", f"sweep.dir={hydra_quote(sweep_dir)}",
                   # secrets masked: a job's command line is shown by the head's dashboard (jobs.check_no_secrets)
                   f"sweep.submitted_overrides={hydra_quote(shlex.join(redact_overrides(fixed)))}"]


def check_shared_folders(cluster: ClusterConfig, sweep_dir: str, cache_dir: str) -> None:
    """Trials write their models to the cache on whichever node runs them, and the driver reads them back and
    writes the sweep folder: on a cluster known to have several nodes both must be s3://."""
    nodes = cluster.node_count()
    if nodes is None or nodes <= 1:
        return
    for key, path in (("sweep.dir", sweep_dir), ("cache_dir", cache_dir)):
        if not storage.is_s3(path):
            raise ConfigError(f"{key} is {path!r}, a local path, but cluster={cluster.kind} may run the sweep's "
                              f"trials on {nodes} nodes: set {key}=s3://BUCKET/PREFIX")


def default_sweep_dir(cluster: SageMakerCluster, name: str) -> str:
    """A sweep on SageMaker writes to S3: unless sweep.dir says where, <cluster.s3_output>/sweeps/<job name> (the
    cache beside it, <s3_output>/sweeps/.cache, is then shared by every such sweep: a rerun reuses its trials)."""
    assert cluster.s3_output
    return storage.join(cluster.s3_output, "sweeps", name)


def submit_sweep(config: KonConfig, overrides: Sequence[str], fixed: Sequence[str], sweep_dir: str,
                 job_name: Optional[str] = None) -> int:
    """Submit the sweep as one job to the cluster and follow it; the job's exit code (130 on Ctrl-C, after
    stopping the job). `job_name`: the SageMaker training job's (its default sweep folder is named after it)."""
    cluster = config.cluster
    assert config.cache_dir is not None
    if config.tracking.enabled:
        check_remote_uri(config.tracking.uri, cluster.kind)
    check_shared_folders(cluster, sweep_dir, config.cache_dir)
    if isinstance(cluster, SageMakerCluster):
        if not storage.is_s3(sweep_dir):
            raise ConfigError(f"sweep.dir is {sweep_dir!r}, a local path: a sweep on SageMaker writes its folder "
                              "to S3: set sweep.dir=s3://BUCKET/PREFIX, or leave it unset "
                              "(<cluster.s3_output>/sweeps/<job name>)")
        assert job_name is not None
        args = sweep_job_overrides(overrides, fixed, config, sweep_dir, data=sagemaker.CHANNEL_DIR)
        request = sagemaker.training_job_request(config, overrides, job_name, module="kon_ray.sweep",
                                                 container_args=args)
        return sagemaker.launch(config, request, f"sweep folder {sweep_dir}")
    if not storage.is_s3(sweep_dir):
        log.warning("sweep.dir is a local path: the summary and page land at %s on the node that runs the job's"
                    " driver (use s3:// for a remote cluster)", sweep_dir)
    args = sweep_job_overrides(overrides, fixed, config, sweep_dir)
    if isinstance(cluster, Ec2Cluster):
        return on_head(config, lambda address, token: submit_job(config, "kon_ray.sweep", args, address,
                                                                 token=token, env_vars=STOP_GRACE))
    assert isinstance(cluster, RayCluster) and cluster.address
    return submit_job(config, "kon_ray.sweep", args, cluster.address, env_vars=STOP_GRACE)
