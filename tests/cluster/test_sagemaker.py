"""cluster=sagemaker: the CreateTrainingJob request as a moto server stores it, status following, failures."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest

from kon_ray.cluster import sagemaker as sm
from kon_ray.config import load_config
from kon_ray.errors import ClusterError, ConfigError
from tests.conftest import compose_config

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:0.1.0"
ROLE = "arn:aws:iam::123456789012:role/kon-ray-sagemaker"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kon-ray-dev-ray-token-AbCdEf"
# the infra outputs a sagemaker run requires (terraform output, README "Running beyond one machine")
INFRA = ["cluster.security_group_id=sg-0123456789abcdef0", "cluster.subnet_id=subnet-0123456789abcdef0",
         f"cluster.kms_key_id={KEY}", f"cluster.auth_token_secret={SECRET}"]


def _config(tmp_path: Path, *overrides: str, infra=tuple(INFRA)):
    return load_config(compose_config(
        ["+dataset=POLA", "cluster=sagemaker", f"cluster.image={IMAGE}", f"cluster.role_arn={ROLE}",
         "cluster.s3_output=s3://kon-bucket/kon-ray", "dataset.path=s3://kon-bucket/POLA", *infra, *overrides],
        tmp_path))


def test_request_shape(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster.instance_count=3")
    name = sm.job_name("kon-ray", "POLA", NOW)
    assert name == "kon-ray-pola-20261126-120000"
    req = sm.training_job_request(config, ["+dataset=POLA", "cluster=sagemaker", "stages=[ingest]"], name)
    assert req["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "File"}
    assert req["RoleArn"] == ROLE
    assert req["ResourceConfig"] == {"InstanceType": "ml.m5.4xlarge", "InstanceCount": 3, "VolumeSizeInGB": 100,
                                     "VolumeKmsKeyId": KEY}
    assert req["InputDataConfig"][0]["ChannelName"] == "data"
    assert req["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://kon-bucket/POLA"
    assert req["OutputDataConfig"] == {"S3OutputPath": f"s3://kon-bucket/kon-ray/{name}/sagemaker", "KmsKeyId": KEY}
    assert req["VpcConfig"] == {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]}
    assert req["EnableInterContainerTrafficEncryption"] is True
    assert req["Environment"] == {"KON_RAY_TOKEN_SECRET": SECRET}  # the secret's ARN; the token never travels
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert json.loads(req["HyperParameters"]["kon_overrides"]) == [
        "+dataset=POLA", "stages=[ingest]", "cluster=local", "cluster.address=auto", "cluster.train_workers=4",
        "cluster.cpus_per_train_worker=4",
        "dataset.path='/opt/ml/input/data/data'", f"output_dir='s3://kon-bucket/kon-ray/{name}/run'",
        f"cluster.storage_path='s3://kon-bucket/kon-ray/{name}/run/ray_train'",
    ]
    assert "Secret" not in json.dumps(req) and "AccessKey" not in json.dumps(req)

    # what the head instance composes: cluster=local joining the job's Ray, sized as conf/cluster/sagemaker.yaml
    head = load_config(compose_config(json.loads(req["HyperParameters"]["kon_overrides"]), tmp_path)).cluster
    assert (type(head).__name__, head.address, head.train_workers, head.cpus_per_train_worker) == (
        "LocalCluster", "auto", 4, 4)
    assert head.storage_path == f"s3://kon-bucket/kon-ray/{name}/run/ray_train"


def test_multi_node_with_local_storage_fails_fast(tmp_path: Path) -> None:
    config = _config(tmp_path, "cluster.instance_count=2", "cluster.storage_path=/tmp/ckpt")
    with pytest.raises(ConfigError, match="cluster.storage_path is '/tmp/ckpt'.*2 nodes"):
        sm.training_job_request(config, [], "j")


@pytest.mark.parametrize(
    "override, message",
    [
        ("cluster.role_arn=kon-ray-role", "cluster.role_arn 'kon-ray-role' is not an IAM role ARN"),
        ("cluster.role_arn=arn:aws:iam::123:role/x", "cluster.role_arn .* is not an IAM role ARN"),
        ("cluster.instance_type=m5.large", "cluster.instance_type"),
        ("cluster.s3_output=/tmp/out", "cluster.s3_output must be an s3:// prefix"),
        ("cluster.max_wait_s=10", "cluster.max_wait_s applies only to spot"),
        ("cluster.image=null", "cluster.image is required"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, override)


@pytest.mark.parametrize("missing", ["security_group_id", "subnet_id", "kms_key_id", "auth_token_secret"])
def test_a_job_outside_the_vpc_unencrypted_or_unauthenticated_is_refused(tmp_path: Path, missing: str) -> None:
    with pytest.raises(ConfigError, match=f"cluster=sagemaker runs only inside .*cluster.{missing} \\(terraform"):
        _config(tmp_path, infra=[o for o in INFRA if not o.startswith(f"cluster.{missing}=")])


def test_local_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.path is .*a local path: SageMaker reads its data from S3"):
        sm.training_job_request(_config(tmp_path, "dataset.path=data/POLA"), [], "j")


def test_launch_against_moto(moto_endpoint, tmp_path: Path) -> None:
    """CreateTrainingJob, DescribeTrainingJob and CloudWatch logs against a moto server. Moto marks a training job
    Completed at once (it cannot run one), so the status sequence is tested separately through `follow`."""
    logs = boto3.client("logs", region_name="eu-west-1")
    name = sm.job_name("kon-ray", "POLA", NOW)
    logs.create_log_group(logGroupName=sm.LOG_GROUP)
    logs.create_log_stream(logGroupName=sm.LOG_GROUP, logStreamName=f"{name}/algo-1-1764158400")
    logs.put_log_events(logGroupName=sm.LOG_GROUP, logStreamName=f"{name}/algo-1-1764158400",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "stage ingest: finished"}])
    out = io.StringIO()
    config = _config(tmp_path, "cluster.poll_s=0.01")
    code = sm.submit_sagemaker(config, ["+dataset=POLA", "stages=[ingest]"], out=out, sleep=lambda s: None,
                               now=NOW)
    assert code == 0
    assert "[algo-1] stage ingest: finished" in out.getvalue()
    stored = boto3.client("sagemaker", region_name="eu-west-1").describe_training_job(TrainingJobName=name)
    assert stored["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert stored["RoleArn"] == ROLE
    assert stored["ResourceConfig"]["InstanceCount"] == 1
    assert stored["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://kon-bucket/POLA"
    assert json.loads(stored["HyperParameters"]["kon_overrides"])[-3] == "dataset.path='/opt/ml/input/data/data'"
    assert stored["StoppingCondition"]["MaxRuntimeInSeconds"] == 86400
    # what moto stores of the VPC / encryption settings (it echoes the ones it models)
    for key in ("VpcConfig", "EnableInterContainerTrafficEncryption", "Environment"):
        if key in stored:
            assert stored[key] == sm.training_job_request(config, [], name)[key], key


def test_missing_log_streams_are_tolerated(moto_endpoint) -> None:
    out = io.StringIO()
    follower = sm.LogFollower(boto3.client("logs", region_name="eu-west-1"), "no-such-job", out)
    follower.poll()  # no group/stream yet: no error
    assert out.getvalue() == ""


def _sequence(*descs):
    items = list(descs)
    return lambda: items.pop(0) if len(items) > 1 else items[0]


def test_follow_polls_with_backoff_until_completed() -> None:
    sleeps = []
    describe = _sequence(
        {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"},
        {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"},
        {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"},
        {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"},
        {"TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"},
    )
    assert sm.follow(describe, "j", poll_s=10, sleep=sleeps.append) == 0
    assert sleeps == [10, 15, 22.5, 10]  # backs off while nothing changes, resets when the status moves


def test_failed_job_is_exit_5_with_the_reason() -> None:
    describe = _sequence(
        {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"},
        {"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed",
         "FailureReason": "AlgorithmError: the kon_ray run exited 3\n(see the head's log)"},
    )
    with pytest.raises(ClusterError, match="failed: AlgorithmError: the kon_ray run exited 3 \\(see") as err:
        sm.follow(describe, "kon-ray-pola-1", poll_s=1, sleep=lambda s: None)
    assert err.value.exit_code == 5


def test_stopped_job_is_exit_5() -> None:
    with pytest.raises(ClusterError, match="stopped"):
        sm.follow(_sequence({"TrainingJobStatus": "Stopped"}), "j", poll_s=1, sleep=lambda s: None)


def test_ctrl_c_stops_the_training_job(tmp_path: Path) -> None:
    class FakeSM:
        stopped = []

        def create_training_job(self, **kwargs):
            return {}

        def describe_training_job(self, TrainingJobName):
            raise KeyboardInterrupt

        def stop_training_job(self, TrainingJobName):
            self.stopped.append(TrainingJobName)

    class NoLogs:
        def describe_log_streams(self, **kwargs):
            return {"logStreams": []}

    fake = FakeSM()
    code = sm.submit_sagemaker(_config(tmp_path), [], make_clients=lambda region: (fake, NoLogs()), now=NOW)
    assert code == 130 and fake.stopped == ["kon-ray-pola-20261126-120000"]


def test_a_sweep_is_one_training_job_whose_head_runs_the_whole_sweep(moto_endpoint, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """`python -m kon_ray.sweep cluster=sagemaker`: checked here, then one training job (on moto) whose head runs
    `python -m kon_ray.sweep` with the data from the job's channel and the sweep folder and cache on S3. The head's
    side of it runs for real in tests/cluster/test_cloud_rehearsal.py."""
    from kon_ray.cluster import sagemaker_entry as entry
    from kon_ray.sweep.__main__ import main
    from kon_ray.sweep.space import parse_command_line

    monkeypatch.chdir(tmp_path)
    user = ["+dataset=POLA", "cluster=sagemaker", f"cluster.image={IMAGE}", f"cluster.role_arn={ROLE}",
            "cluster.s3_output=s3://kon-bucket/kon-ray", "dataset.path=s3://kon-bucket/POLA", *INFRA,
            "cluster.instance_count=3", "cluster.poll_s=0.01", "tracking.uri=http://mlflow:5000",
            "model.max_depth=3,4", "sweep.max_concurrent=2", "cluster.job_name_prefix=kon-sweep"]
    assert main(user) == 0  # moto marks the job Completed at once
    client = boto3.client("sagemaker", region_name="eu-west-1")
    [summary] = client.list_training_jobs(NameContains="kon-sweep")["TrainingJobSummaries"]
    name = summary["TrainingJobName"]
    stored = client.describe_training_job(TrainingJobName=name)
    assert stored["ResourceConfig"]["InstanceCount"] == 3
    assert entry.run_module(stored["HyperParameters"]) == "kon_ray.sweep"
    *args, submitted = json.loads(stored["HyperParameters"]["kon_overrides"])
    assert args[:4] == ["+dataset=POLA", "tracking.uri=http://mlflow:5000", "model.max_depth=3,4",
                        "sweep.max_concurrent=2"] and name.startswith("kon-sweep-pola-")
    assert args[-3:] == ["dataset.path='/opt/ml/input/data/data'", "cache_dir='s3://kon-bucket/kon-ray/sweeps/.cache'",
                         f"sweep.dir='s3://kon-bucket/kon-ray/sweeps/{name}'"]
    assert not any(a.startswith("cluster=sagemaker") for a in args)
    # what the head composes: a sweep joining the job's Ray, the point swept, the reproduce lines the user's command
    command = parse_command_line(args + [submitted])
    head = load_config(compose_config(command.fixed, tmp_path)).cluster
    assert (type(head).__name__, head.address) == ("LocalCluster", "auto")
    assert [d.override for d in command.dimensions] == ["model.max_depth"]
    assert "cluster=sagemaker" in command.sweep["submitted_overrides"]


def test_a_sweep_on_sagemaker_with_a_local_sweep_folder_is_exit_2(tmp_path: Path, monkeypatch, caplog) -> None:
    from kon_ray.sweep.__main__ import main

    monkeypatch.chdir(tmp_path)
    user = ["+dataset=POLA", "cluster=sagemaker", f"cluster.image={IMAGE}", f"cluster.role_arn={ROLE}",
            "cluster.s3_output=s3://kon-bucket/kon-ray", "dataset.path=s3://kon-bucket/POLA", *INFRA,
            "tracking=off", "model.max_depth=3,4", "sweep.dir=sweeps/here", "cache_dir=s3://kon-bucket/c"]
    assert main(user) == 2
    assert f"sweep.dir is '{tmp_path}/sweeps/here', a local path: a sweep on SageMaker writes its folder to S3" \
        in caplog.text
