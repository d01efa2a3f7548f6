"""Starting (or joining) the local Ray that a `cluster=local` run uses."""

from __future__ import annotations

import logging
import os

import ray

from kon_ray.cluster.config import ClusterConfig, LocalCluster
from kon_ray.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)


def init_local_ray(cluster: LocalCluster) -> None:
    """Start a Ray for this run, or join one named by cluster.address / $RAY_ADDRESS (as tests and jobs do)."""
    if ray.is_initialized():
        return
    address = cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        quiet_ray_data_console()
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        log.info("joined Ray at %s (%d nodes, %s CPUs)", address, nodes, ray.cluster_resources().get("CPU"))
        check_joined_storage(cluster, nodes)
        return
    num_cpus = (cluster.num_cpus or os.cpu_count() or 1) + cluster.data_cpu_reserve
    object_store = int(cluster.object_store_gb * 1024**3) if cluster.object_store_gb else None
    try:
        context = ray.init(
            num_cpus=num_cpus,
            object_store_memory=object_store,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises plain Exception when its processes do not come up
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(
            f"could not start a local Ray ({num_cpus} CPUs, object store {_gb(object_store)}): {reason}; on a busy"
            " machine retry, or join a running one with cluster.address=auto after `ray start --head`"
        ) from None
    quiet_ray_data_console()
    log.info("started a local Ray: %d logical CPUs, object store %s; Ray's own logs in %s/logs", num_cpus,
             _gb(object_store), context.address_info.get("session_dir"))


def quiet_ray_data_console() -> None:
    """Ray Data prints every dataset's plan and, in a non-interactive terminal, a progress line per operator every
    10 s: thousands of lines in a full-scale run, burying kon_ray's own. Keep them in Ray's session log
    (<session>/logs/ray-data/) and let only warnings and errors through to the terminal."""
    import ray.data  # noqa: F401 - importing it installs Ray Data's loggers

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            handler.setLevel(logging.WARNING)


def _gb(size: int | None) -> str:
    return "Ray's default" if size is None else f"{size / 1024**3:.1f} GiB"


def check_joined_storage(cluster: ClusterConfig, nodes: int) -> None:
    """On a multi-node Ray, Ray Train checkpoints need shared storage: fail before any stage runs.

    A submitted job always carries an explicit cluster.storage_path (kon_ray/cluster/jobs.py), so this catches a
    cluster=ray run whose node count was not known when it was submitted.
    """
    path = cluster.storage_path
    if nodes > 1 and path and not path.startswith("s3://"):
        raise ConfigError(
            f"cluster.storage_path is {path!r}, a local path, but this Ray cluster has {nodes} nodes: Ray Train"
            " checkpoints need shared storage; set cluster.storage_path=s3://BUCKET/PREFIX"
            " (or output_dir=s3://... when storage_path is null)"
        )
