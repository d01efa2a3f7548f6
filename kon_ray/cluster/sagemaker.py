"""cluster=sagemaker: the run as a SageMaker training job whose instances form one Ray cluster.

The launcher (here) calls CreateTrainingJob with the project image, the execution role, the "data" channel
(S3 -> /opt/ml/input/data/data on every instance), the run's Hydra overrides as the `kon_overrides`
hyperparameter (JSON list), the command the head runs as `kon_module` (kon_ray.run, or kon_ray.sweep for a whole
sweep: kon_ray/sweep/job.py), and a stopping condition; then it follows the job: status by DescribeTrainingJob
(polling with backoff), logs from CloudWatch (/aws/sagemaker/TrainingJobs, one stream per instance; streams
appear only once instances start, so missing ones are waited for). Completed -> 0; Failed/Stopped -> ClusterError
(exit 5) with SageMaker's FailureReason. Ctrl-C stops the job and exits 130.

The job runs only inside the project's VPC (VpcConfig from cluster.subnet_id / cluster.security_group_id, the
infra outputs), its volumes and output encrypted with the project key (cluster.kms_key_id), traffic between its
instances encrypted (EnableInterContainerTrafficEncryption); the config refuses a sagemaker run without them.

Inside the job, docker/entrypoint.sh runs kon_ray.cluster.sagemaker_entry on every instance (the Ray bootstrap):
each instance reads the Ray token from the Secrets Manager secret named by the KON_RAY_TOKEN_SECRET environment
variable (the secret's ARN travels, never its value) and starts Ray with token authentication on, the dashboard
bound to the instance's private address. The run folder is <cluster.s3_output>/<job name>/run (or output_dir
when that is already s3://). Credentials come from the standard AWS chain; none are put in the request.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, TextIO

from kon_ray import storage
from kon_ray.cluster.config import SageMakerCluster, carried_overrides, joined_overrides, of_kind
from kon_ray.cluster.sagemaker_entry import MODULE_HYPERPARAMETER, MODULES
from kon_ray.config import KonConfig
from kon_ray.errors import ClusterError, ConfigError, first_line
from kon_ray.terminal import result_stream

log = logging.getLogger(__name__)

CHANNEL = "data"
CHANNEL_DIR = f"/opt/ml/input/data/{CHANNEL}"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
HYPERPARAMETER = "kon_overrides"
TOKEN_SECRET_ENV = "KON_RAY_TOKEN_SECRET"  # read by kon_ray/cluster/sagemaker_entry.py
HYPERPARAMETER_MAX = 2500  # CreateTrainingJob's limit on one hyperparameter value
TERMINAL = ("Completed", "Failed", "Stopped")


def job_name(prefix: str, dataset: str, now: Optional[datetime] = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    name = f"{prefix}-{dataset.lower()}-{stamp}"
    return "".join(c if c.isalnum() or c == "-" else "-" for c in name)[:63]


def _cluster(config: KonConfig) -> SageMakerCluster:
    return of_kind(config.cluster, SageMakerCluster)


def run_dir(config: KonConfig, name: str) -> str:
    if storage.is_s3(config.output_dir):
        return config.output_dir
    return storage.join(_cluster(config).s3_output or "", name, "run")


def s3_input(config: KonConfig) -> str:
    source = _cluster(config).s3_input or config.dataset.path
    if not storage.is_s3(source):
        raise ConfigError(
            f"dataset.path is {source!r}, a local path: SageMaker reads its data from S3; set"
            " dataset.path=s3://BUCKET/PREFIX (or cluster.s3_input=s3://...)"
        )
    return source


def container_overrides(overrides: Sequence[str], config: KonConfig, name: str) -> List[str]:
    """The `python -m kon_ray.run` overrides the head instance runs with."""
    out = run_dir(config, name)
    storage_path = config.cluster.storage_path or storage.join(out, "ray_train")
    return carried_overrides(overrides) + [
        *joined_overrides(config.cluster),
        f"dataset.path='{CHANNEL_DIR}'",
        f"output_dir='{out}'",
        f"cluster.storage_path='{storage_path}'",
    ]


def training_job_request(config: KonConfig, overrides: Sequence[str], name: str, *, module: str = "kon_ray.run",
                         container_args: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """CreateTrainingJob's arguments (pure: tests compare them with what the service stored): the head runs
    `python -m <module> <container_args>`, by default a run with `container_overrides`."""
    assert module in MODULES, module
    cluster = _cluster(config)
    out = run_dir(config, name)
    cluster.check_shared_storage(out)
    args = container_overrides(overrides, config, name) if container_args is None else list(container_args)
    encoded = json.dumps(args)
    if len(encoded) > HYPERPARAMETER_MAX:
        raise ConfigError(
            f"the run's overrides are {len(encoded)} characters, over SageMaker's {HYPERPARAMETER_MAX} per"
            " hyperparameter: move settings into a conf/experiment/ file and pass +experiment=NAME"
        )
    stopping: Dict[str, int] = {"MaxRuntimeInSeconds": cluster.max_runtime_s}
    if cluster.spot_workers:
        stopping["MaxWaitTimeInSeconds"] = cluster.max_wait_s or cluster.max_runtime_s
    request: Dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": cluster.image, "TrainingInputMode": "File"},
        "RoleArn": cluster.role_arn,
        "HyperParameters": {HYPERPARAMETER: encoded, MODULE_HYPERPARAMETER: module},
        "InputDataConfig": [
            {
                "ChannelName": CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": s3_input(config),
                        "S3DataDistributionType": "FullyReplicated",  # every instance has the same paths
                    }
                },
                "InputMode": "File",
            }
        ],
        "OutputDataConfig": {
            "S3OutputPath": storage.join(cluster.s3_output or "", name, "sagemaker"),
            "KmsKeyId": cluster.kms_key_id,
        },
        "ResourceConfig": {
            "InstanceType": cluster.instance_type,
            "InstanceCount": cluster.instance_count,
            "VolumeSizeInGB": cluster.volume_size_gb,
            "VolumeKmsKeyId": cluster.kms_key_id,
        },
        "VpcConfig": {"SecurityGroupIds": [cluster.security_group_id], "Subnets": [cluster.subnet_id]},
        "EnableInterContainerTrafficEncryption": True,
        "Environment": {TOKEN_SECRET_ENV: cluster.auth_token_secret},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": cluster.spot_workers,
        "Tags": [{"Key": "project", "Value": "kon_ray"}, {"Key": "dataset", "Value": config.dataset.name}],
    }
    return request


class LogFollower:
    """Prints new CloudWatch events of the job's streams (one per instance); tolerates streams not there yet."""

    def __init__(self, logs: Any, name: str, out: IO[str]) -> None:
        self.logs, self.name, self.out = logs, name, out
        self.tokens: Dict[str, Optional[str]] = {}

    def poll(self) -> None:
        try:
            streams = self.logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.name}/"
            ).get("logStreams", [])
        except Exception as exc:  # ResourceNotFoundException until the first instance logs; throttling
            if "ResourceNotFound" not in type(exc).__name__ + str(exc):
                log.debug("CloudWatch logs not readable yet: %s", exc)
            return
        for stream in sorted(s["logStreamName"] for s in streams):
            self._read(stream)

    def _read(self, stream: str) -> None:
        host = stream.split("/", 1)[-1].split("-")[:2]
        prefix = "-".join(host)
        while True:
            kwargs: Dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if self.tokens.get(stream):
                kwargs["nextToken"] = self.tokens[stream]
            try:
                page = self.logs.get_log_events(**kwargs)
            except Exception as exc:
                log.debug("could not read log stream %s: %s", stream, exc)
                return
            for event in page.get("events", []):
                self.out.write(f"[{prefix}] {event.get('message', '').rstrip()}\n")
            self.out.flush()
            token = page.get("nextForwardToken")
            if not page.get("events") or token == self.tokens.get(stream):
                self.tokens[stream] = token
                return
            self.tokens[stream] = token


def follow(
    describe: Callable[[], Dict[str, Any]],
    name: str,
    *,
    poll_s: float,
    logs: Optional[LogFollower] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Wait for the job; 0 when Completed, ClusterError(5) with SageMaker's reason when Failed or Stopped."""
    interval, last_secondary = poll_s, None
    while True:
        desc = describe()
        status = desc.get("TrainingJobStatus")
        secondary = desc.get("SecondaryStatus")
        if secondary != last_secondary:
            log.info("SageMaker job %s: %s / %s", name, status, secondary)
            last_secondary, interval = secondary, poll_s  # something moved: look again soon
        if logs is not None:
            logs.poll()
        if status in TERMINAL:
            break
        sleep(interval)
        interval = min(interval * 1.5, poll_s * 4)
    if status == "Completed":
        log.info("SageMaker job %s completed", name)
        return 0
    reason = " ".join(str(desc.get("FailureReason") or "no FailureReason given").split())
    raise ClusterError(
        f"SageMaker job {name} {status.lower()}: {reason[:500]} (logs: CloudWatch {LOG_GROUP}/{name}/*)"
    )


def clients(region: Optional[str]) -> tuple[Any, Any]:
    """boto3 clients from the standard AWS chain; AWS_ENDPOINT_URL(_SAGEMAKER/_LOGS) reach a stand-in."""
    import boto3

    session = boto3.session.Session(region_name=region or None)
    if not session.region_name:
        raise ConfigError("cluster.region is not set (nor AWS_DEFAULT_REGION): set cluster.region=eu-west-1")
    return session.client("sagemaker"), session.client("logs")


def submit_sagemaker(
    config: KonConfig,
    overrides: Sequence[str],
    *,
    make_clients: Callable[[Optional[str]], tuple[Any, Any]] = clients,
    out: Optional[TextIO] = None,  # default: the terminal (kon_ray.terminal.result_stream)
    sleep: Callable[[float], None] = time.sleep,
    now: Optional[datetime] = None,
) -> int:
    """A run as a training job: started, followed to its end; its exit code."""
    name = job_name(_cluster(config).job_name_prefix, config.dataset.name, now)
    request = training_job_request(config, overrides, name)
    return launch(config, request, f"run folder {run_dir(config, name)}", make_clients=make_clients, out=out,
                  sleep=sleep)


def launch(
    config: KonConfig,
    request: Dict[str, Any],
    folder: str,  # where its results land, for the log line ("run folder s3://...")
    *,
    make_clients: Callable[[Optional[str]], tuple[Any, Any]] = clients,
    out: Optional[TextIO] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """CreateTrainingJob, then follow the job (status, CloudWatch logs) to its end: 0 when Completed, 130 after
    stopping it on Ctrl-C; a refused or failed job is a ClusterError (exit 5)."""
    cluster = _cluster(config)
    name = request["TrainingJobName"]
    sagemaker, logs = make_clients(cluster.region)
    try:
        sagemaker.create_training_job(**request)
    except Exception as exc:
        raise ClusterError(f"SageMaker refused training job {name}: {first_line(exc)}") from None
    log.info("started SageMaker job %s (%d x %s); %s", name, cluster.instance_count, cluster.instance_type, folder)
    try:
        return follow(
            lambda: sagemaker.describe_training_job(TrainingJobName=name),
            name,
            poll_s=cluster.poll_s,
            logs=LogFollower(logs, name, out or result_stream()),
            sleep=sleep,
        )
    except KeyboardInterrupt:
        try:
            sagemaker.stop_training_job(TrainingJobName=name)
            log.error("interrupted: stopping SageMaker job %s", name)
        except Exception as exc:
            log.error("interrupted; could not stop SageMaker job %s (%s): stop it in the console", name,
                      first_line(exc))
        return 130
