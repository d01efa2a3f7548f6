"""A real multi-node Ray on this machine, with token authentication on, as a default Ray 2.60 head runs.

One module-scoped cluster (tests/cluster/conftest.py `token_cluster`): a head with no CPUs (so every task runs on a
worker node) and two worker nodes of 2 CPUs, each its own raylet, object store and agents; the data and the run
folders on a moto S3 server; tracking to a real `mlflow server`. The client is given only the token's file
(RAY_AUTH_TOKEN_PATH): kon_ray turns Ray's token mode on by itself.

- the whole pipeline through `cluster=ray`: Ray's state API (ray.util.state.list_tasks, node ids) shows every stage
  that ran more than one task ran them on both worker nodes; the splits and the drift report equal, byte for byte
  in content, a single-node run's (the same command with cluster=local on its own local Ray); the models' test
  metrics agree within TRAIN_TOLERANCE;
- a worker node killed while it runs a preprocess task: the run finishes on the remaining node, with the same
  splits and drift report;
- a submission without the token, or with a wrong one, is refused: exit 5, one line saying where tokens come from;
- a sweep submitted with `cluster=ray` is one Ray Job whose trials run on both worker nodes, its summary on S3 and
  in MLflow, its exit code the job's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import boto3
import pyarrow.parquet as pq
import pytest

from kon_ray import storage
from tests.cluster.conftest import REPO, _processes_of, state_query
from tests.conftest import as_a_terminal_would
from tests.tracking.conftest import mlflow_server  # noqa: F401  (a real MLflow server, session-scoped)
from tests.tracking.record import assert_complete_record

pytestmark = pytest.mark.slow

BUCKET = "kon-multinode"
ROWS = 3000  # debug=tiny's sample size
STAGES = ("ingest", "preprocess", "drift", "segment", "train", "infer")
SPLITS = ("train", "test", "current")
# Two fits of the same data on different task placements: xgboost's histogram sums may differ in the last bits
# when partials are added in another order, so the test metrics may differ by a little, not by much.
TRAIN_TOLERANCE = 0.02

@pytest.fixture(scope="module")
def data(token_cluster) -> str:
    from kon_ray.config import load_config
    from kon_ray.synth.config import SynthConfig
    from kon_ray.synth.writer import generate
    from tests.conftest import compose_config

    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    dataset = load_config(compose_config(["+dataset=POLA"])).dataset
    generate(dataset, SynthConfig(rows=ROWS, rows_per_file=ROWS // 4), f"s3://{BUCKET}/POLA")
    return f"s3://{BUCKET}/POLA"


def _client_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0")
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)  # nothing but what each test passes: kon_ray must turn token mode on itself
    env.update(extra)
    return env


def _kon(args: List[str], env: Dict[str, str], tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kon_ray.run", "+dataset=POLA", "debug=tiny", *args,
                           f"hydra.run.dir={tmp_path / name}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=420)
    done.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return done


def _remote(cluster: Dict[str, Any], run: str, data: str, *extra: str) -> List[str]:
    return ["cluster=ray", f"cluster.address={cluster['address']}", f"dataset.path={data}", f"output_dir={run}",
            *extra]


def _location(run: str, folder: str) -> str:
    return storage.read_json(storage.join(run, f"{folder}.json"))["location"]


def _splits(run: str) -> Dict[str, Any]:
    """Every split's rows, all parts in order, as one Arrow table each."""
    import pyarrow as pa

    features = _location(run, "features")
    tables = {}
    for split in SPLITS:
        parts = ["s3://" + p for p in storage.list_files(storage.join(features, split))]
        assert parts, (run, split)
        tables[split] = pa.concat_tables([pq.read_table(storage.filesystem(p)[1], filesystem=storage.filesystem(p)[0])
                                          for p in parts])
    return tables


# a run's own times and what comes from its tracking store (the multi-node run tracks to a server, whose registered
# models feed the report's prediction drift; the reference runs with tracking=off)
_RUN_SPECIFIC = re.compile(r"(time|created|seconds|run_id|generated_at|uri|tracking|prediction_drift)$", re.I)


def _drift(run: str) -> Any:
    """The drift report without what names the run itself (its folders, its times)."""
    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if not _RUN_SPECIFIC.search(str(k))}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    text = storage.read_text(storage.join(_location(run, "drift"), "drift_report.json"))
    prefix = run[: -len("run")]  # s3://BUCKET/<multi|single|fault>/: the run folder and its cache beside it
    return clean(json.loads(text.replace(prefix, "<run prefix>/")))


def _stage_windows(log: str) -> Dict[str, tuple]:
    """{stage: (first second, last second)} from the job's streamed log ("HH:MM:SS INFO kon_ray.pipeline: stage X")."""
    starts, ends = {}, {}
    for hms, stage, what in re.findall(r"(\d\d:\d\d:\d\d) INFO kon_ray.pipeline: stage (\w+): (started|finished)", log):
        (starts if what == "started" else ends)[stage] = hms
    return {s: (starts[s], ends[s]) for s in starts if s in ends}


def _tasks_per_stage(tasks: List[Dict[str, Any]], windows: Dict[str, tuple]) -> Dict[str, List[str]]:
    """{stage: node ids of the tasks that started inside the stage's window} (1 s resolution: the log's)."""
    out: Dict[str, List[str]] = {s: [] for s in windows}
    for task in tasks:
        if task["type"] != "NORMAL_TASK" or not task.get("start_time_ms"):
            continue
        second = dt.datetime.fromtimestamp(task["start_time_ms"] / 1000).strftime("%H:%M:%S")
        for stage, (first, last) in windows.items():
            if first <= second <= last:
                out[stage].append(task["node_id"])
    return out


def one_node_reference(data: str, cpus: int, tmp: Path) -> Iterator[Dict[str, Any]]:
    """The reference: the same command on a single-node local Ray of `cpus` CPUs, started at once and awaited where
    it is compared (`_finished`), so that it runs while the multi-node run does; killed at the end if still running."""
    run = f"s3://{BUCKET}/single/run"
    out = tmp / "terminal.txt"
    with out.open("w") as terminal:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kon_ray.run", "+dataset=POLA", "debug=tiny", f"dataset.path={data}",
             f"output_dir={run}", "tracking=off", f"cluster.num_cpus={cpus}", f"hydra.run.dir={tmp / 'client'}"],
            cwd=REPO, env=_client_env(RAY_AUTH_MODE="disabled"), stdout=terminal, stderr=subprocess.STDOUT,
            text=True)
    yield {"run": run, "proc": proc, "out": out, "started": time.monotonic()}
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def single_node(data, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    """The reference on 4 CPUs, the cluster's total: two separate Rays on one machine share the wall clock, nothing
    else."""
    yield from one_node_reference(data, 4, tmp_path_factory.mktemp("single"))


def _finished(reference: Dict[str, Any]) -> subprocess.CompletedProcess:
    """The single-node reference run, once it has ended: its exit code, terminal output and seconds."""
    code = reference["proc"].wait(timeout=420)
    done = subprocess.CompletedProcess(reference["proc"].args, code, reference["out"].read_text(), "")
    done.seconds = time.monotonic() - reference["started"]  # type: ignore[attr-defined]
    return done


def same_as_one_node(run: str, single_node: Dict[str, Any], tracking_uri: str,
                     drift: Callable[[str], Any] = _drift) -> Tuple[subprocess.CompletedProcess, Any]:
    """Assert that `run`'s splits and drift report (as `drift` reads it) equal the single-node reference run's;
    return the reference run and `run`'s MLflow run."""
    from mlflow.tracking import MlflowClient

    reference = _finished(single_node)
    assert reference.returncode == 0, (reference.stdout + reference.stderr)[-3000:]
    multi, single = _splits(run), _splits(single_node["run"])
    for split in SPLITS:
        assert multi[split].equals(single[split]), split
    assert drift(run) == drift(single_node["run"])
    client = MlflowClient(tracking_uri=tracking_uri)
    (tracked,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                    filter_string=f"tags.output_dir = '{run}'")
    return reference, tracked


def test_the_whole_pipeline_runs_on_three_nodes_with_a_token_and_matches_one_node(
        token_cluster, data, single_node, mlflow_server, tmp_path) -> None:  # noqa: F811
    run = f"s3://{BUCKET}/multi/run"
    done = _kon(_remote(token_cluster, run, data, f"tracking.uri={mlflow_server}"),
                _client_env(RAY_AUTH_TOKEN_PATH=str(token_cluster["token_file"])), tmp_path, "client")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert "submitted Ray job" in log and "Missing authentication token" not in log

    windows = _stage_windows(log)
    tasks = [t for t in state_query(token_cluster, "tasks") if t["state"] == "FINISHED"]
    per_stage = _tasks_per_stage(tasks, windows)
    workers = set(token_cluster["workers"])
    print(f"\nmulti-node run: {done.seconds:.1f} s; stages {windows}; tasks per stage and node "
          f"{ {s: {n[:6]: nodes.count(n) for n in set(nodes)} for s, nodes in per_stage.items()} }")
    assert {"preprocess", "drift", "segment"} <= {s for s, nodes in per_stage.items() if nodes}, (windows, per_stage)
    # both worker nodes worked; the head (no CPUs) ran no work unit (actors of no CPU, such as the training progress
    # sink, and the job's driver may sit there)
    assert {t["node_id"] for t in tasks if t["type"] == "NORMAL_TASK"} == workers, \
        sorted((t["type"], t["name"], t["node_id"]) for t in tasks if t["node_id"] not in workers)
    for stage, nodes in per_stage.items():
        # the execution layer spreads work units over the nodes (SPREAD), so every stage of two or more tasks
        # ran on both worker nodes; not train, whose populations fit in one task that holds a node's training CPUs
        # (model.distributed_min_rows), beside a task or two that count classes wherever there is room
        if len(nodes) >= 2 and stage != "train":
            assert len(set(nodes)) >= 2, f"stage {stage} ran all its {len(nodes)} tasks on one node"

    reference, tracked = same_as_one_node(run, single_node, mlflow_server)
    print(f"single-node run: {reference.seconds:.1f} s; stages {_stage_windows(reference.stdout + reference.stderr)}")
    assert_complete_record(mlflow_server, tracked.info.run_id)
    # the run folder on S3 reads as a folder: the reports beside the pointers, the index, the run's own log
    for readable in ("drift/drift_report.html", "reports/domestic.html", "models/industrial/metadata.json",
                     "index.json", "tracking.json", "run.log", ".hydra/config.yaml"):
        assert storage.exists(storage.join(run, readable)), readable
    index = json.loads(storage.read_text(storage.join(run, "index.json")))
    assert index["stages"]["drift"]["location"] == _location(run, "drift")
    for population in ("domestic", "industrial"):
        got = json.loads(storage.read_text(storage.join(_location(run, "reports"), f"{population}.json")))
        want = json.loads(storage.read_text(storage.join(_location(single_node["run"], "reports"),
                                                         f"{population}.json")))
        for metric in ("accuracy", "macro_f1"):
            assert abs(got["splits"]["test"][metric] - want["splits"]["test"][metric]) <= TRAIN_TOLERANCE


def test_a_submission_without_the_token_or_with_a_wrong_one_is_refused(token_cluster, tmp_path) -> None:
    args = _remote(token_cluster, f"s3://{BUCKET}/refused/run", f"s3://{BUCKET}/POLA", "tracking=off",
                   "stages=[ingest]")
    missing = _kon(args, _client_env(), tmp_path, "none")
    assert missing.returncode == 5, missing.stderr[-3000:]
    line = [x for x in missing.stderr.splitlines() if "cluster error" in x or "ERROR" in x]
    assert len(line) == 1 and "requires an authentication token and none was found: set RAY_AUTH_TOKEN," \
        " RAY_AUTH_TOKEN_PATH or cluster.auth_token_file" in line[0], missing.stderr[-2000:]
    assert "Traceback" not in missing.stderr
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    refused = _kon([*args, f"cluster.auth_token_file={wrong}"], _client_env(), tmp_path, "wrong")
    assert refused.returncode == 5, refused.stderr[-3000:]
    # (the file's path is masked in the line: kon_ray treats *token* keys' values as secrets)
    assert re.search(r"refused the token from cluster.auth_token_file \(.*\) \(wrong token\): set RAY_AUTH_TOKEN",
                     refused.stderr), refused.stderr[-2000:]
    assert token_cluster["token"] not in missing.stderr + refused.stderr + missing.stdout + refused.stdout


def two_finished_trials(sweep_dir: str, tracking: str, experiment: str) -> Tuple[Dict[str, Any], Set[str], Any]:
    """A remote sweep of two trials, both finished: its summary on S3 with the page, log and best model beside it,
    and in MLflow (`tracking`) its parent (FINISHED) with a FINISHED child per trial, tagged with the node the trial
    ran on. The summary, the trials' nodes and the parent run."""
    from mlflow.tracking import MlflowClient

    summary = storage.read_json(storage.join(sweep_dir, "sweep_summary.json"))
    trials = summary["trials"]
    assert [t["status"] for t in trials] == ["FINISHED"] * 2, trials
    for name in ("sweep.html", "sweep.log", "best/models/domestic/model.ubj"):
        assert storage.exists(storage.join(sweep_dir, name)), name
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert {(c.data.tags["trial_status"], c.info.status) for c in children} == {("FINISHED", "FINISHED")}
    nodes = {t["node_id"] for t in trials}
    assert {c.data.tags["node_id"] for c in children} == nodes
    return summary, nodes, parent


def test_a_sweep_is_one_ray_job_whose_trials_run_on_both_worker_nodes(token_cluster, data, mlflow_server,  # noqa: F811
                                                                      tmp_path) -> None:
    """`python -m kon_ray.sweep ... cluster=ray`: one Ray Job runs the whole sweep (2 trials of 2 CPUs, each a whole
    worker node, at once); its log streams back, the summary and page land in the sweep folder on S3, MLflow has
    the parent and a child per trial with its node; the exit code is the job's (a failing job's code through
    jobs.submit_job, the path a sweep job shares, is test_ray_jobs.py's); Ctrl-C here stops the job, exit 130, and
    its driver ends the parent run KILLED."""
    from mlflow.tracking import MlflowClient

    def command(*args: str) -> Dict[str, Any]:
        return {"args": [sys.executable, "-m", "kon_ray.sweep", "+dataset=POLA", "debug=tiny", "cluster=ray",
                         f"cluster.address={token_cluster['address']}", "sweep.populations=[domestic]",
                         "sweep.cpus_per_trial=2", "model.max_depth=2,3", *args],
                "cwd": tmp_path, "env": _client_env(RAY_AUTH_TOKEN_PATH=str(token_cluster["token_file"])),
                "text": True}

    def sweep(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(**command(*args), capture_output=True, timeout=420)

    # the cache of the three-node run's stages (reused when that test ran first, computed otherwise)
    sweep_dir, cache = f"s3://{BUCKET}/sweeps/one", f"s3://{BUCKET}/multi/.cache"
    done = sweep(f"dataset.path={data}", f"cache_dir={cache}", f"sweep.dir={sweep_dir}", "sweep.scheduler=none",
                 f"tracking.uri={mlflow_server}", "tracking.experiment=multinode-sweep")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    # the job's own lines, streamed back: its trials, its summary with the command line reproducing the best
    assert "submitted Ray job" in log and "sweep domestic: 2 trial(s), up to 2 at once, 2 CPU(s) each" in log, \
        log[-3000:]
    # the user's command, not the job's (cluster=local cluster.address=auto would not run here)
    assert ("reproduce: python -m kon_ray.run +dataset=POLA debug=tiny cluster=ray "
            f"cluster.address={token_cluster['address']}") in log and "Traceback" not in log

    summary, nodes, parent = two_finished_trials(sweep_dir, mlflow_server, "multinode-sweep")
    assert nodes == set(token_cluster["workers"]), (nodes, token_cluster["workers"])
    client = MlflowClient(mlflow_server)
    assert parent.data.metrics["best/domestic/validation_mlogloss"] == \
        pytest.approx(summary["best"]["domestic"]["validation_mlogloss"])
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"sweep.html", "sweep_summary.json"}

    # Ctrl-C once the job's driver has opened its parent run (the stages are reused: it is about to start trials)
    stopped = subprocess.Popen(**command(f"dataset.path={data}", f"cache_dir={cache}", f"sweep.dir={sweep_dir}-c",
                                         f"tracking.uri={mlflow_server}", "tracking.experiment=multinode-stopped"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=as_a_terminal_would)
    said = []
    try:
        for line in stopped.stdout:  # type: ignore[union-attr]
            said.append(line)
            if "sweep: MLflow parent run" in line:
                stopped.send_signal(signal.SIGINT)
                break
        said.append(stopped.communicate(timeout=120)[0])
    finally:
        if stopped.poll() is None:
            stopped.kill()
    assert stopped.returncode == 130 and "interrupted: stopped Ray job" in "".join(said), "".join(said)[-3000:]
    experiment = client.get_experiment_by_name("multinode-stopped").experiment_id
    deadline = time.monotonic() + 60  # the driver ends its run within the job's stop grace (STOP_GRACE)
    while client.search_runs([experiment])[0].info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    assert client.search_runs([experiment])[0].info.status == "KILLED"


def _busy_worker_on(temp_dir: str) -> bool:
    """A Ray worker process of that node running a task (Ray titles it ray::<task name>; idle ones ray::IDLE)."""
    import psutil

    for pid in _processes_of(temp_dir):
        try:
            title = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if title.startswith("ray::") and not title.startswith("ray::IDLE") and "Supervisor" not in title:
            return True
    return False


def test_a_worker_node_lost_mid_stage_does_not_change_the_outputs(token_cluster, data, single_node,
                                                                  tmp_path) -> None:
    """Runs last in the module: it kills a worker node (every process of that raylet) once that node runs a
    preprocess task; the stage's tasks are retried on the other node and the run finishes."""
    victim = token_cluster["workers"][1]
    victim_dir = token_cluster["node_temp_dirs"][victim]
    run = f"s3://{BUCKET}/fault/run"
    args = ["+dataset=POLA", "debug=tiny", *_remote(token_cluster, run, data, "tracking=off",
                                                    "stages=[ingest,preprocess,segment,drift]"),
            f"hydra.run.dir={tmp_path / 'client'}"]
    env = _client_env(RAY_AUTH_TOKEN_PATH=str(token_cluster["token_file"]))
    proc = subprocess.Popen([sys.executable, "-m", "kon_ray.run", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: List[str] = []
    killed = False
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "stage preprocess: started" in line:
                deadline = time.monotonic() + 60
                while not _busy_worker_on(victim_dir) and time.monotonic() < deadline:
                    time.sleep(0.05)
                for pid in _processes_of(victim_dir):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed = True
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = "".join(lines)
    assert killed, log[-3000:]
    assert proc.returncode == 0, log[-5000:]
    assert victim not in token_cluster["node_ids"]()  # the node is gone for good
    assert _finished(single_node).returncode == 0
    multi, single = _splits(run), _splits(single_node["run"])
    for split in SPLITS:
        assert multi[split].equals(single[split]), split
    assert _drift(run) == _drift(single_node["run"])
