"""The second hour (issue 32): what a user trips over after the first run works.

1. Runs started together: each gets its own run folder and MLflow run name, and a fresh sqlite store is created
   once, not by every run at the same time.

Most checks call the commands' functions in-process; the few that need the real command line run it as a
subprocess, on tiny data or before Ray starts.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kon_ray.cli import claim_run_dir
from tests.conftest import REPO, generate_pola
# ---- item 1: runs started together ---------------------------------------------------------------------------------

def _start_a_run(uri: str, name: str, together, run_ids) -> None:
    """One process of a start together: wait until every process is ready, then do what Tracker.start does."""
    from kon_ray.tracking.common import import_mlflow, prepare_store

    mlflow = import_mlflow()
    together.wait()  # every process opens the fresh store within milliseconds of the others
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("kon_ray")
    with mlflow.start_run(run_name=name) as run:
        run_ids.put(run.info.run_id)


def test_runs_started_together_on_a_fresh_sqlite_store_all_start(tmp_path):
    """Without prepare_store, MLflow's sqlite store is created by every process that finds it missing: all but one
    fail (`table experiments already exists`), as the second of two `make run`s did."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    context = multiprocessing.get_context("forkserver")  # children of a fresh process with MLflow imported once
    context.set_forkserver_preload(["kon_ray.tracking.common", "mlflow"])
    together, run_ids = context.Barrier(3), context.Queue()
    started = [context.Process(target=_start_a_run, args=(uri, f"run-{n}", together, run_ids)) for n in range(3)]
    for process in started:
        process.start()
    for process in started:
        process.join(timeout=120)
    assert [process.exitcode for process in started] == [0, 0, 0]
    run_ids = {run_ids.get(timeout=5) for _ in started}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("kon_ray")
    found = client.search_runs([experiment.experiment_id])
    assert {run.info.run_id for run in found} == run_ids and len(run_ids) == 3
    assert sorted(run.info.run_name for run in found) == ["run-0", "run-1", "run-2"]


def test_a_run_folder_taken_by_another_run_gets_the_next_free_name(tmp_path):
    wanted = tmp_path / "outputs" / "POLA" / "2026-12-07_05-55-45"
    assert claim_run_dir(str(wanted)) == (str(wanted), str(tmp_path / "outputs"))
    assert claim_run_dir(str(wanted)) == (f"{wanted}_2", f"{wanted}_2")
    assert claim_run_dir(str(wanted)) == (f"{wanted}_3", f"{wanted}_3")


@pytest.mark.slow
def test_two_runs_started_together_each_get_their_own_folder_log_and_mlflow_run(tmp_path):
    """The issue's case: two runs of one dataset at once on a fresh default store (./mlflow.db). Every second of the
    next five minutes already has a run folder, so each run has to take a `_2`/`_3` name, whichever second it
    starts in; without that they would share a folder (and run.log) with the folder already there."""
    data = generate_pola(tmp_path / "data" / "POLA", 300)
    now = datetime.datetime.now()
    taken = [tmp_path / "outputs" / "POLA" / f"{now + datetime.timedelta(seconds=s):%Y-%m-%d_%H-%M-%S}"
             for s in range(300)]
    for folder in taken:
        folder.mkdir(parents=True)
    runs = [_popen("kon_ray.run", "+dataset=POLA", f"dataset.path={data}", "stages=[ingest]", cwd=tmp_path)
            for _ in range(2)]
    outcomes = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    folders = []
    for _, stderr in outcomes:
        finished = [line for line in stderr.splitlines() if "run finished: outputs in " in line]
        assert len(finished) == 1, stderr
        folders.append(Path(finished[0].split("run finished: outputs in ")[1]))
    assert folders[0] != folders[1]
    for folder in folders:
        assert folder.parent == tmp_path / "outputs" / "POLA" and folder not in taken
        assert folder.name.rsplit("_", 1)[0] in {t.name for t in taken} and folder.name.rsplit("_", 1)[1] in "23"
        log_lines = (folder / "run.log").read_text().splitlines()
        assert [line for line in log_lines if "run finished" in line] == [
            line for line in log_lines if line.endswith(f"run finished: outputs in {folder}")]
        assert len([line for line in log_lines if "run finished" in line]) == 1
    assert all(list(folder.iterdir()) == [] for folder in taken)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    found = client.search_runs([client.get_experiment_by_name("kon_ray").experiment_id])
    assert sorted((run.info.run_name, run.info.status) for run in found) == sorted(
        (f"POLA-{folder.name}", "FINISHED") for folder in folders)


def _popen(module: str, *args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
