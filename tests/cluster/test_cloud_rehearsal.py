"""The cloud paths rehearsed on this machine with real processes (issue 33; README "Running beyond one machine").

SageMaker, three instances: the launcher's CreateTrainingJob request goes to moto's SageMaker; what moto stored
(hyperparameters, environment, channel, instance count) becomes the training-container contract SageMaker gives
each instance: its own root standing for /opt/ml (resourceconfig.json with `hosts` and `current_host`,
hyperparameters.json, inputdataconfig.json, the "data" channel copied from moto S3 as File mode does, output/ for
the `failure` file), the SM_* environment, its own HOME (so its ~/.ray/auth_token is its own). Each instance runs
the image's entrypoint, `docker/entrypoint.sh train`, from a copy of what the Dockerfile copies into the image
(kon_ray/, conf/, pyproject.toml) with the locked environment (.venv) on PATH. The instances are 127.0.0.11,
127.0.0.12 and 127.0.0.13 (algo-1..3, through $KON_SM_HOST_ADDRESSES instead of the job's /etc/hosts), every Ray
port free-chosen ($KON_RAY_START_ARGS) because they share one machine; each reads the Ray token from a Secrets
Manager secret on moto and runs Ray with token authentication on.

- the whole pipeline on three instances: every instance exits 0; the outputs on moto S3 equal a one-node run's;
  the run is recorded on a real `mlflow server`;
- bad data: the head writes the run's one error line to its `failure` file and exits 3 (DataError); the others 0;
- a token secret that does not exist: every instance fails closed (exit 1, its `failure` file says why) and no
  Ray starts;
- an instance that never comes up: the head fails after its join timeout with a line naming that host;
- a sweep (`python -m kon_ray.sweep cluster=sagemaker`): one job, its trials on two instances, its folder on S3.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import boto3
import pytest

from kon_ray import storage
from kon_ray.net import free_port, free_ports
from tests.cluster.conftest import REPO, VENV_BIN, _node_ports, _processes_of
from tests.cluster.test_multinode import _client_env, _drift, one_node_reference, same_as_one_node, two_finished_trials
from tests.tracking.conftest import mlflow_server  # noqa: F401  (a real MLflow server, session-scoped)
from tests.tracking.record import assert_complete_record

pytestmark = pytest.mark.slow

BUCKET = "kon-rehearsal"
ROWS = 3000  # debug=tiny's sample size
HOSTS = ["algo-1", "algo-2", "algo-3"]
# not 127.0.0.1: a head given that address advertises the machine's own IP instead
ADDRESSES = {host: f"127.0.0.{10 + i}" for i, host in enumerate(HOSTS, start=1)}
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:0.1.0"
ROLE = "arn:aws:iam::123456789012:role/kon-ray-sagemaker"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
INSTANCE_TYPE = "ml.m5.4xlarge"
CPUS_PER_INSTANCE = 2
JOB_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def world(moto_endpoint, tmp_path_factory) -> Dict[str, Any]:
    """The bucket with good and bad POLA data, the Ray token's secret, and the image's project folder."""
    from kon_ray.config import load_config
    from kon_ray.synth.config import SynthConfig
    from kon_ray.synth.writer import generate
    from tests.conftest import compose_config

    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    dataset = load_config(compose_config(["+dataset=POLA"])).dataset
    # four files: work units enough for Ray tasks on every node (fewer run in the driver at this size)
    generate(dataset, SynthConfig(rows=ROWS, rows_per_file=ROWS // 4), f"s3://{BUCKET}/POLA")
    s3.put_object(Bucket=BUCKET, Key="BAD/part-00000.parquet", Body=b"this is not a parquet file\n")
    secret = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name="kon-ray-rehearsal-token", SecretString=os.urandom(32).hex())["ARN"]
    # the image's project folder: what the Dockerfile copies (COPY kon_ray, conf, pyproject.toml) and nothing else
    image = tmp_path_factory.mktemp("image") / "kon_ray"
    image.mkdir()
    shutil.copytree(REPO / "kon_ray", image / "kon_ray", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", image / "conf")
    shutil.copy(REPO / "pyproject.toml", image / "pyproject.toml")
    return {"secret": secret, "image": image, "data": f"s3://{BUCKET}/POLA"}


@pytest.fixture(scope="module")
def single_node(world, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    """The reference: the same run on a one-node local Ray of one instance's CPUs."""
    yield from one_node_reference(world["data"], CPUS_PER_INSTANCE, tmp_path_factory.mktemp("single"))


def create_job(name: str, data: str, secret: str, *extra: str) -> Dict[str, Any]:
    """The launcher's CreateTrainingJob on moto's SageMaker; what the service stored (DescribeTrainingJob), with
    the request's Environment, which moto does not store (SageMaker passes it to every instance)."""
    from kon_ray.cluster import sagemaker as sm
    from kon_ray.config import load_config
    from tests.conftest import compose_config

    overrides = ["+dataset=POLA", "debug=tiny", "cluster=sagemaker", f"cluster.image={IMAGE}",
                 f"cluster.role_arn={ROLE}", f"cluster.s3_output=s3://{BUCKET}/jobs", f"dataset.path={data}",
                 "cluster.security_group_id=sg-0123456789abcdef0", "cluster.subnet_id=subnet-0123456789abcdef0",
                 f"cluster.kms_key_id={KEY}", f"cluster.auth_token_secret={secret}",
                 f"cluster.instance_count={len(HOSTS)}", "cluster.train_workers=2", "cluster.cpus_per_train_worker=1",
                 *extra]
    config = load_config(compose_config(overrides))
    client = boto3.client("sagemaker", region_name="eu-west-1")
    request = sm.training_job_request(config, overrides, name)
    client.create_training_job(**request)
    return {**client.describe_training_job(TrainingJobName=name), "Environment": request["Environment"]}


def _node_args(temp_dir: str, head: bool) -> List[str]:
    ports = _node_ports()
    if head:
        dash, client = free_ports(2)
        ports += [f"--dashboard-port={dash}", f"--ray-client-server-port={client}"]
    return [f"--temp-dir={temp_dir}", f"--num-cpus={CPUS_PER_INSTANCE}", "--object-store-memory=120000000", *ports]


class Job:
    """One rehearsed training job: a contract per instance under a root of its own, and the instances' processes."""

    def __init__(self, job: Dict[str, Any], world: Dict[str, Any], tmp: Path, hosts: List[str],
                 secret: Optional[str] = None, join_timeout_s: int = 120) -> None:
        self.job, self.tmp, self.hosts = job, tmp, hosts
        self.name = job["TrainingJobName"]
        self.port = free_port()
        self.temp_dirs: Dict[str, str] = {}
        self.procs: Dict[str, subprocess.Popen] = {}
        self.env = {host: self._contract(host, world, secret, join_timeout_s) for host in HOSTS}

    def root(self, host: str) -> Path:
        return self.tmp / host / "opt_ml"

    def _contract(self, host: str, world: Dict[str, Any], secret: Optional[str], join_timeout_s: int) -> Dict[str, str]:
        root = self.root(host)
        config = root / "input" / "config"
        config.mkdir(parents=True)
        count = self.job["ResourceConfig"]["InstanceCount"]
        assert count == len(HOSTS)
        (config / "resourceconfig.json").write_text(json.dumps({
            "current_host": host, "current_instance_type": INSTANCE_TYPE, "current_group_name": "homogeneousCluster",
            "hosts": HOSTS, "instance_groups": [{"instance_group_name": "homogeneousCluster",
                                                 "instance_type": INSTANCE_TYPE, "hosts": HOSTS}],
            "network_interface_name": "eth0"}))
        (config / "hyperparameters.json").write_text(json.dumps(self.job["HyperParameters"]))
        channels = {c["ChannelName"]: c for c in self.job["InputDataConfig"]}
        (config / "inputdataconfig.json").write_text(json.dumps({
            name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
            for name in channels}))
        for name, channel in channels.items():  # File mode: the S3 prefix copied to the instance before it starts
            source = channel["DataSource"]["S3DataSource"]["S3Uri"]
            target = root / "input" / "data" / name
            target.mkdir(parents=True)
            for key in storage.list_files(source):
                fs, path = storage.filesystem("s3://" + key)
                with fs.open_input_stream(path) as src:
                    (target / key.rsplit("/", 1)[-1]).write_bytes(src.read())
        for folder in ("model", "output/data", "code"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        home = self.tmp / host / "home"
        home.mkdir()
        temp_dir = tempfile.mkdtemp(prefix=f"ksm{host[-1]}", dir="/tmp")  # Ray's socket paths stay short
        self.temp_dirs[host] = temp_dir
        env = _client_env(
            **self.job.get("Environment", {}),
            HOME=str(home), PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", PYTHONPATH=str(world["image"]),
            KON_PROJECT_DIR=str(world["image"]),
            TRAINING_JOB_NAME=self.name, TRAINING_JOB_ARN=self.job["TrainingJobArn"],
            SM_CURRENT_HOST=host, SM_HOSTS=json.dumps(HOSTS), SM_NUM_CPUS=str(CPUS_PER_INSTANCE),
            SM_CHANNELS=json.dumps(sorted(channels)), SM_CHANNEL_DATA=str(root / "input" / "data" / "data"),
            SM_MODEL_DIR=str(root / "model"), SM_OUTPUT_DATA_DIR=str(root / "output" / "data"),
            SM_INPUT_CONFIG_DIR=str(config),
            KON_SM_ROOT=str(root), KON_SM_HOST_ADDRESSES=json.dumps(ADDRESSES), KON_RAY_PORT=str(self.port),
            KON_RAY_START_ARGS=" ".join(_node_args(temp_dir, host == HOSTS[0])),
            KON_RAY_JOIN_TIMEOUT_S=str(join_timeout_s),
        )
        if secret is not None:
            env["KON_RAY_TOKEN_SECRET"] = secret
        return env

    def start(self) -> "Job":
        for host in self.hosts:
            log = (self.tmp / f"{host}.log").open("w")
            self.procs[host] = subprocess.Popen(["bash", str(REPO / "docker" / "entrypoint.sh"), "train"],
                                                cwd=self.tmp / host, env=self.env[host], stdout=log,
                                                stderr=subprocess.STDOUT)
        return self

    def wait(self) -> Dict[str, int]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        codes = {}
        for host, proc in self.procs.items():
            codes[host] = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return codes

    def log(self, host: str) -> str:
        return (self.tmp / f"{host}.log").read_text()

    def failure(self, host: str) -> Optional[str]:
        path = self.root(host) / "output" / "failure"
        return path.read_text() if path.exists() else None

    def ray_processes(self) -> List[int]:
        return [pid for folder in self.temp_dirs.values() for pid in _processes_of(folder)]

    def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for pid in self.ray_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for folder in self.temp_dirs.values():
            shutil.rmtree(folder, ignore_errors=True)


def _drift_report(run: str) -> Any:
    """The drift report as test_multinode compares it, and without the stage cache's keys in the folders it names:
    they hash the config, whose dataset.path differs (the instances read the channel's copy, the reference S3)."""
    return json.loads(re.sub(r"(\w+)-[0-9a-f]{16}\b", r"\1-<key>", json.dumps(_drift(run))))


def _logs(job: Job) -> str:
    return "\n".join(f"--- {host} ---\n{job.log(host)[-4000:]}" for host in job.procs)


@pytest.mark.rehearsal  # minutes: `make rehearse`, not `make test` (README, Tests)
def test_sagemaker_three_instances_run_the_pipeline_like_one_node(world, single_node, mlflow_server,  # noqa: F811
                                                                 tmp_path) -> None:
    started = time.monotonic()
    described = create_job("kon-ray-rehearsal-good", world["data"], world["secret"],
                           f"tracking.uri={mlflow_server}")
    assert described["Environment"] == {"KON_RAY_TOKEN_SECRET": world["secret"]}  # the ARN travels, not the token
    assert json.loads(described["HyperParameters"]["kon_overrides"])[-3:][0] == "dataset.path='/opt/ml/input/data/data'"
    job = Job(described, world, tmp_path, HOSTS).start()
    try:
        codes = job.wait()
    finally:
        job.cleanup()
    print(f"\nSageMaker rehearsal, 3 instances: {time.monotonic() - started:.1f} s")
    assert codes == {host: 0 for host in HOSTS}, _logs(job)
    head = job.log("algo-1")
    assert "all 3 Ray nodes joined" in head, head[-3000:]
    for host in HOSTS[1:]:
        assert "the head closed; %s exits" % host in job.log(host), job.log(host)[-3000:]
        assert job.failure(host) is None
    assert job.failure("algo-1") is None
    for host in HOSTS:  # each instance's own token file, the secret's value, readable by its user only
        token = job.tmp / host / "home" / ".ray" / "auth_token"
        assert oct(token.stat().st_mode & 0o777) == "0o600"

    run = f"s3://{BUCKET}/jobs/{job.name}/run"
    _, tracked = same_as_one_node(run, single_node, mlflow_server, drift=_drift_report)
    assert_complete_record(mlflow_server, tracked.info.run_id)
    for readable in ("drift/drift_report.html", "models/industrial/metadata.json", "index.json", "run.log"):
        assert storage.exists(storage.join(run, readable)), readable


@pytest.mark.rehearsal  # minutes: `make rehearse`, not `make test` (README, Tests)
def test_sagemaker_a_sweep_is_one_job_whose_trials_spread_over_its_instances(world, mlflow_server,  # noqa: F811
                                                                            tmp_path, monkeypatch) -> None:
    """`python -m kon_ray.sweep cluster=sagemaker`: the launcher's one training job (moto stores it and marks it
    Completed at once), then that job rehearsed on three instances: the head runs the whole sweep, its two trials
    (2 CPUs each, a whole instance each) on two instances, the summary, page and best model in the sweep folder on
    S3, MLflow the parent and a child per trial, the reproduce line the user's own command."""
    from kon_ray.sweep.__main__ import main

    monkeypatch.chdir(tmp_path)
    user = ["+dataset=POLA", "debug=tiny", "cluster=sagemaker", f"cluster.image={IMAGE}", f"cluster.role_arn={ROLE}",
            f"cluster.s3_output=s3://{BUCKET}/jobs", f"dataset.path={world['data']}",
            "cluster.security_group_id=sg-0123456789abcdef0", "cluster.subnet_id=subnet-0123456789abcdef0",
            f"cluster.kms_key_id={KEY}", f"cluster.auth_token_secret={world['secret']}",
            f"cluster.instance_count={len(HOSTS)}", "cluster.poll_s=0.01",
            "cluster.job_name_prefix=kon-rehearsal-sweep",
            f"tracking.uri={mlflow_server}", "tracking.experiment=sagemaker-sweep", "sweep.populations=[domestic]",
            "sweep.cpus_per_trial=2", "sweep.scheduler=none", "model.max_depth=2,3"]
    assert main(user) == 0
    client = boto3.client("sagemaker", region_name="eu-west-1")
    [listed] = client.list_training_jobs(NameContains="kon-rehearsal-sweep")["TrainingJobSummaries"]
    described = {**client.describe_training_job(TrainingJobName=listed["TrainingJobName"]),
                 "Environment": {"KON_RAY_TOKEN_SECRET": world["secret"]}}  # moto does not store it
    job = Job(described, world, tmp_path, HOSTS).start()
    try:
        codes = job.wait()
    finally:
        job.cleanup()
    assert codes == {host: 0 for host in HOSTS}, _logs(job)
    head = job.log("algo-1")
    assert "-m kon_ray.sweep" in head and "sweep domestic: 2 trial(s), up to 3 at once, 2 CPU(s) each" in head, \
        head[-3000:]
    assert "reproduce: python -m kon_ray.run +dataset=POLA debug=tiny cluster=sagemaker" in head, head[-3000:]

    _, nodes, _ = two_finished_trials(f"s3://{BUCKET}/jobs/sweeps/{job.name}", mlflow_server, "sagemaker-sweep")
    assert len(nodes) == 2, nodes  # a whole instance each: two instances


def test_sagemaker_bad_data_fails_the_head_with_its_one_line_and_the_others_exit_cleanly(world, tmp_path) -> None:
    described = create_job("kon-ray-rehearsal-bad", f"s3://{BUCKET}/BAD", world["secret"], "tracking=off")
    job = Job(described, world, tmp_path, HOSTS).start()
    try:
        codes = job.wait()
    finally:
        job.cleanup()
    assert codes == {"algo-1": 3, "algo-2": 0, "algo-3": 0}, _logs(job)  # 3: DataError (kon_ray/errors.py)
    reason = job.failure("algo-1")
    assert reason and reason.startswith("data error: ") and "\n" not in reason, reason
    assert "part-00000.parquet" in reason, reason
    assert job.failure("algo-2") is None and job.failure("algo-3") is None


def test_sagemaker_a_missing_token_secret_fails_closed_on_every_instance(world, tmp_path) -> None:
    described = create_job("kon-ray-rehearsal-nosecret", world["data"], world["secret"], "tracking=off")
    missing = world["secret"].replace("rehearsal-token", "no-such-token")
    job = Job(described, world, tmp_path, HOSTS, secret=missing).start()
    try:
        codes = job.wait()
        assert not job.ray_processes()  # no instance started Ray
    finally:
        job.cleanup()
    assert codes == {host: 1 for host in HOSTS}, _logs(job)
    for host in HOSTS:
        reason = job.failure(host) or ""
        assert reason.startswith("cannot set up Ray's token authentication: cannot read the Ray token from the"
                                 f" Secrets Manager secret {missing}"), reason
        assert not (job.tmp / host / "home" / ".ray" / "auth_token").exists()


@pytest.mark.rehearsal  # minutes: `make rehearse`, not `make test` (README, Tests)
def test_sagemaker_an_instance_that_never_joins_fails_the_head_naming_it(world, tmp_path) -> None:
    described = create_job("kon-ray-rehearsal-nojoin", world["data"], world["secret"], "tracking=off")
    job = Job(described, world, tmp_path, HOSTS[:2], join_timeout_s=20).start()  # algo-3 never comes up
    try:
        codes = job.wait()
    finally:
        job.cleanup()
    assert codes == {"algo-1": 1, "algo-2": 0}, _logs(job)
    reason = job.failure("algo-1") or ""
    assert reason.startswith("2 of 3 Ray nodes joined within 20 s; not joined: algo-3 (127.0.0.13)"
                             " (joined: 127.0.0.11, 127.0.0.12)"), reason
    assert job.failure("algo-2") is None


# --- EC2: the rendered cluster=ec2 node types on Ray's fake multi-node provider, autoscaling ---------------------

EC2_INFRA = ["cluster.instance_profile_arn=arn:aws:iam::123456789012:instance-profile/kon-ray-dev-ray-node",
             "cluster.security_group_id=sg-0123456789abcdef0", "cluster.subnet_id=subnet-0123456789abcdef0",
             f"cluster.kms_key_id={KEY}"]
MAX_WORKERS = 2
# stands for an m5.4xlarge's 16 vCPUs (the rendered worker type advertises the instance's own); one, so that the
# run's Ray Train (2 workers of 1 CPU) needs MAX_WORKERS nodes at once
WORKER_CPUS = 1
IDLE_TIMEOUT_MINUTES = 0.2


def rendered_ec2(secret: str, *extra: str) -> Dict[str, Any]:
    """cluster/ec2.yaml rendered for cluster=ec2 as `python -m kon_ray.run cluster=ec2` renders it before `ray up`."""
    from kon_ray.cluster import ec2
    from kon_ray.config import load_config
    from tests.conftest import compose_config

    config = load_config(compose_config(["+dataset=POLA", "cluster=ec2", f"cluster.image={IMAGE}", *EC2_INFRA,
                                         f"cluster.auth_token_secret={secret}", *extra]))
    cfg = ec2.render(config.cluster, ec2.load_template(config.cluster.cluster_yaml))
    ec2.validate(cfg)
    return cfg


def fake_provider_config(rendered: Dict[str, Any], gcs_address: str, worker_cpus: int) -> Dict[str, Any]:
    """The autoscaling config of Ray's fake multi-node provider (as ray.cluster_utils.AutoscalingCluster writes it)
    with the rendered file's node types, resources, worker bounds, upscaling speed and idle timeout: read from the
    rendered file, so the rehearsal and `ray up` cannot disagree on them. Only the workers' CPU count is the
    rehearsal's (a real node advertises its instance type's)."""
    from kon_ray.cluster import ec2

    types = rendered["available_node_types"]
    head, worker = types[ec2.HEAD_TYPE], types[ec2.WORKER_TYPE]
    assert "CPU" not in worker["resources"]  # else the rendered value would be the one to use
    fixed: Dict[str, Any] = {key: [] for key in (
        "initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
        "head_start_ray_commands", "worker_start_ray_commands", "cluster_synced_files", "rsync_exclude",
        "rsync_filter")}
    return {
        **fixed, "file_mounts": {}, "file_mounts_sync_continuously": False, "auth": {}, "docker": {},
        "cluster_name": rendered["cluster_name"],
        "max_workers": rendered["max_workers"],
        "upscaling_speed": rendered["upscaling_speed"],
        "idle_timeout_minutes": rendered["idle_timeout_minutes"],
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "head_node_type": rendered["head_node_type"],
        "available_node_types": {
            ec2.HEAD_TYPE: {"resources": dict(head["resources"]), "node_config": {}, "max_workers": 0},
            ec2.WORKER_TYPE: {"resources": {**worker["resources"], "CPU": worker_cpus,
                                            "object_store_memory": 120_000_000},
                              "node_config": {}, "min_workers": worker["min_workers"],
                              "max_workers": worker["max_workers"]},
        },
    }


@pytest.fixture(scope="module")
def autoscaling_cluster(world, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    """A token-authenticated Ray head (no CPUs, as rendered) whose autoscaler launches the rendered worker type on
    Ray's fake multi-node provider: each worker a real raylet on this machine; none at the start."""
    from kon_ray.net import wait_for_port
    from tests.cluster.conftest import _ray_start, token_env

    tmp = tmp_path_factory.mktemp("ec2")
    rendered = rendered_ec2(world["secret"], f"cluster.max_workers={MAX_WORKERS}",
                            f"cluster.idle_timeout_minutes={IDLE_TIMEOUT_MINUTES}")
    temp_dir = tempfile.mkdtemp(prefix="kas", dir="/tmp")
    port, dash, client = free_ports(3)
    config_file = tmp / "autoscaling.json"
    config_file.write_text(json.dumps(fake_provider_config(rendered, f"127.0.0.1:{port}", WORKER_CPUS)))
    token_file = tmp / "auth_token"  # what the nodes' start commands write from the secret
    token_file.write_text(boto3.client("secretsmanager", region_name="eu-west-1").get_secret_value(
        SecretId=world["secret"])["SecretString"])
    token_file.chmod(0o600)
    env = token_env(token_file, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    head_cpus = rendered["available_node_types"]["ray.head.default"]["resources"]["CPU"]
    cluster = {"address": f"http://127.0.0.1:{dash}", "env": env, "token_file": token_file, "rendered": rendered,
               "temp_dir": temp_dir}
    try:
        _ray_start([str(VENV_BIN / "ray"), "start", "--head", f"--autoscaling-config={config_file}",
                    f"--port={port}", f"--num-cpus={head_cpus}", f"--dashboard-port={dash}",
                    "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--temp-dir={temp_dir}",
                    "--object-store-memory=120000000", f"--ray-client-server-port={client}", *_node_ports(),
                    "--disable-usage-stats"], env, temp_dir)
        if not wait_for_port(dash, 60):
            pytest.fail(f"the Ray dashboard did not open port {dash}")
        yield cluster
    finally:  # the head's processes and their children: the autoscaler's fake nodes are the monitor's children
        for pid in _processes_of(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)


_NODES_SCRIPT = """
import json, sys
from ray.util import state
print(json.dumps([{"node_id": n.node_id, "state": n.state, "is_head": n.is_head_node,
                   "start": n.start_time_ms, "end": n.end_time_ms, "cpus": (n.resources_total or {}).get("CPU", 0)}
                  for n in state.list_nodes(address=sys.argv[1], detail=True, limit=1000)]))
"""


def _nodes(cluster: Dict[str, Any]) -> List[Dict[str, Any]]:
    done = subprocess.run([sys.executable, "-c", _NODES_SCRIPT, cluster["address"]], env=cluster["env"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak(workers: List[Dict[str, Any]]) -> int:
    """The most worker nodes alive at once, from their start and end times."""
    events = sorted([(w["start"], 1) for w in workers] + [(w["end"] or float("inf"), -1) for w in workers],
                    key=lambda e: (e[0], e[1]))
    alive = peak = 0
    for _, step in events:
        alive += step
        peak = max(peak, alive)
    return peak


@pytest.mark.rehearsal  # minutes: `make rehearse`, not `make test` (README, Tests)
def test_ec2_autoscaling_cluster_launches_workers_up_to_max_and_removes_idle_ones(
        autoscaling_cluster, world, single_node, mlflow_server, tmp_path) -> None:  # noqa: F811
    cluster = autoscaling_cluster
    assert cluster["rendered"]["max_workers"] == MAX_WORKERS
    assert cluster["rendered"]["idle_timeout_minutes"] == IDLE_TIMEOUT_MINUTES
    before = _nodes(cluster)
    assert [n["is_head"] for n in before if n["state"] == "ALIVE"] == [True]  # no workers at the start

    run = f"s3://{BUCKET}/ec2/run"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "kon_ray.run", "+dataset=POLA", "debug=tiny", "cluster=ray",
         f"cluster.address={cluster['address']}", f"dataset.path={world['data']}", f"output_dir={run}",
         f"tracking.uri={mlflow_server}", "cluster.train_workers=2", "cluster.cpus_per_train_worker=1",
         "model.distributed_min_rows=0",  # Ray Train even at this size: its 2 workers ask for 2 nodes at once
         f"hydra.run.dir={tmp_path / 'client'}"],
        cwd=REPO, env=_client_env(RAY_AUTH_TOKEN_PATH=str(cluster["token_file"])), capture_output=True, text=True,
        timeout=JOB_TIMEOUT_S)
    print(f"\nEC2 rehearsal run: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]

    workers = [n for n in _nodes(cluster) if not n["is_head"]]
    assert workers and all(w["cpus"] == WORKER_CPUS for w in workers), workers
    assert _peak(workers) == MAX_WORKERS, workers  # the autoscaler went up to cluster.max_workers, not beyond

    _, tracked = same_as_one_node(run, single_node, mlflow_server, drift=_drift_report)
    assert tracked.info.status == "FINISHED"

    # idle workers go after idle_timeout_minutes (12 s here) plus the autoscaler's rounds
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        alive = [n for n in _nodes(cluster) if n["state"] == "ALIVE" and not n["is_head"]]
        if not alive:
            break
        time.sleep(3)
    assert not alive, alive
