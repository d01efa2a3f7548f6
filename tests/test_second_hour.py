"""The second hour (issue 32): what a user trips over after the first run works.

1. Runs started together: each gets its own run folder and MLflow run name, and a fresh sqlite store is created
   once, not by every run at the same time.

Most checks call the commands' functions in-process; the few that need the real command line run it as a
subprocess, on tiny data or before Ray starts.
"""

from __future__ import annotations

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
