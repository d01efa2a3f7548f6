"""Ctrl-C (issue 18, item 1): in any stage, on the driver, in Ray tasks or in Ray Train workers, the run exits 130
with one "interrupted" line, publishes nothing of the interrupted stage (the stages before it stay published), and
ends its MLflow run KILLED.

The end-to-end tests start a real `python -m kon_ray.run` in its own session and send SIGINT to its process group,
as a terminal does, on an event that proves the stage is at work: its "started" line on the terminal (preprocess), or
the first checkpoint the fit writes under ray_train/ (train; the fit is given rounds enough never to end on its
own). Training is tested on both paths: Ray Train (`model.distributed_min_rows=0`), whose own SIGINT handler made
the run exit 1 without a word, and the one-process path, whose two fits run side by side in driver threads that
only the main thread's Ctrl-C reaches. The execution layer's part (a task's interruption however Ray wrapped it,
cancelling the tasks other threads wait on) is also tested in-process on the shared test Ray, in seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

from kon_ray import execution
from kon_ray.manifest import MANIFEST
from tests.conftest import REPO, as_a_terminal_would, generate_pola

# The end-to-end tests are slow: each is a whole run (a Ray start, the stages before the interrupted one), 20-50 s.

UPSTREAM = {"preprocess": ["ingest"], "train": ["ingest", "preprocess", "segment"]}
TRAIN_STAGES = "stages=[ingest,preprocess,segment,train]"  # what training reads; drift is not on its way
FOLDER = {"ingest": "ingest", "preprocess": "features", "drift": "drift", "segment": "segment", "train": "models"}


def _signal_state(pid: int) -> str:
    """The process's blocked, ignored and caught signal masks (/proc), for a failure message."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return ", ".join(line.strip() for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
    except OSError:
        return "no /proc status"


class Run:
    """`python -m kon_ray.run` in its own session (a terminal's foreground process group); its terminal output
    (stdout and stderr) collected line by line."""

    def __init__(self, cwd: Path, *overrides: str) -> None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
        env.pop("RAY_ADDRESS", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kon_ray.run", *overrides], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=as_a_terminal_would,
        )
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, event: Callable[[], bool], what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not event():
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"the run ended (exit {self.proc.returncode}) before {what}:\n" + "\n".join(self.lines))
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {what} within {timeout} s:\n" + "\n".join(self.lines))
            time.sleep(0.05)

    def interrupt(self) -> None:
        """SIGINT to the process group, as Ctrl-C in a terminal."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 120) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            signals = _signal_state(self.proc.pid)
            self.kill()
            pytest.fail(f"still running {timeout} s after Ctrl-C ({signals}):\n" + "\n".join(self.lines))
        self._reader.join(10)
        return code

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def pola(tmp_path_factory) -> Path:
    return generate_pola(tmp_path_factory.mktemp("data") / "POLA", 3000)  # read only: one copy for the module


def _start(tmp_path: Path, data: Path, *overrides: str) -> tuple[Run, Path]:
    run_dir = tmp_path / "run"
    run = Run(tmp_path, "+dataset=POLA", "debug=tiny", f"dataset.path={data}", f"hydra.run.dir={run_dir}",
              f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *overrides)
    return run, run_dir


def _check_interrupted(run: Run, code: int, run_dir: Path, tmp_path: Path, stage: str) -> None:
    """The four promises: exit 130, one line, nothing of `stage` published (earlier stages are), MLflow KILLED."""
    terminal = "\n".join(run.lines)
    assert code == 130, terminal
    said = [line for line in run.lines if "interrupted" in line]
    # the line names the stage it stopped and the earlier stages that stay published (issue 32, item 5)
    line = (f"interrupted in stage {stage}: nothing of it was published; the stages before it"
            f" ({', '.join(UPSTREAM[stage])}) are, and running the same command again reuses them")
    assert len(said) == 1 and said[0].endswith(f"ERROR kon_ray.cli: {line}"), terminal
    assert [line for line in run.lines if " ERROR " in line] == said, terminal
    assert "Traceback" not in terminal and "unexpected error" not in terminal, terminal

    cache = run_dir.parent / ".cache"  # beside the run folder: outputs of every stage, by key
    published = sorted(p.name.split("-", 1)[0] for p in cache.iterdir())
    assert published == sorted(UPSTREAM[stage]), published  # no folder of the stage, not even a staging one
    for earlier in UPSTREAM[stage]:
        (folder,) = cache.glob(f"{earlier}-*")
        assert (folder / MANIFEST).is_file()
        assert (run_dir / FOLDER[earlier]).resolve() == folder.resolve()
    assert not (run_dir / FOLDER[stage]).exists() and not (run_dir / FOLDER[stage]).is_symlink()
    checkpoints = run_dir / "ray_train"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []  # the fit's checkpoints are removed

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("kon_ray")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.info.status == "KILLED"
    assert mlflow_run.data.tags["status"] == "interrupted" and mlflow_run.data.tags["error"] == "interrupted"


@pytest.mark.slow
def test_ctrl_c_during_preprocess(tmp_path, pola):
    """Preprocess at work in Ray tasks (map_units), the driver waiting on them. Batches of 16 rows make the stage
    take ~8 s instead of ~1 s at 3,000 rows, so a loaded CI machine's delay in delivering Ctrl-C cannot let the stage
    finish first (it did, once, under xdist on 2 cores)."""
    run, run_dir = _start(tmp_path, pola, "dataset.features.batch_rows=16")
    run.wait_for(lambda: any(line.endswith("stage preprocess: started") for line in run.lines),
                 "'stage preprocess: started' line")
    run.interrupt()
    code = run.finish()
    assert not any("stage preprocess: finished" in line for line in run.lines), "interrupted too late"
    _check_interrupted(run, code, run_dir, tmp_path, "preprocess")


@pytest.mark.slow
@pytest.mark.parametrize("path", ["ray_train", "one_process"])
def test_ctrl_c_during_training(tmp_path, pola, path):
    """A fit that would run for hours, interrupted once it has written its first checkpoint: the Ray Train workers
    (or the one-process fits' Ray tasks) are boosting. The run must end promptly, not when the fit would."""
    endless = [TRAIN_STAGES, "model.num_boost_round=1000000", "model.early_stopping_rounds=1000000",
               "model.checkpoint_frequency=1"]
    if path == "ray_train":
        endless.append("model.distributed_min_rows=0")
    run, run_dir = _start(tmp_path, pola, *endless)
    checkpoints = run_dir / "ray_train"
    run.wait_for(lambda: checkpoints.is_dir() and any(p.is_file() for p in checkpoints.rglob("*")),
                 "training checkpoint under ray_train/")
    run.interrupt()
    code = run.finish(timeout=120)  # promptly: the fit itself would take hours
    assert not any("train domestic:" in line and "best round" in line for line in run.lines)
    _check_interrupted(run, code, run_dir, tmp_path, "train")


# ---- the execution layer, in-process ------------------------------------------------------------------------------

@pytest.fixture
def tasks_defined_here(ray_session):
    """Ray workers cannot import this test module: send its task functions by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _interrupted() -> None:
    raise KeyboardInterrupt


def _waits(marker: str) -> None:
    Path(marker).write_text("started")
    time.sleep(600)


def test_an_interruption_inside_a_task_comes_back_as_keyboard_interrupt(tasks_defined_here):
    """Ray hands it back as RayTaskError(TaskCancelledError), an Exception: it must not read as a crash (exit 1)."""
    from ray.exceptions import RayTaskError

    with pytest.raises(KeyboardInterrupt) as caught:
        execution.run_remote(_interrupted)
    assert isinstance(caught.value.__cause__, RayTaskError)


def test_ray_train_failures_caused_by_an_interruption_are_interruptions():
    from ray.exceptions import TaskCancelledError
    from ray.train import ControllerError, WorkerGroupError

    cancelled = WorkerGroupError("worker 1 failed", {1: TaskCancelledError()})
    assert execution.interrupted_in(cancelled)
    assert execution.interrupted_in(ControllerError(cancelled))
    assert not execution.interrupted_in(WorkerGroupError("worker 1 failed", {1: ValueError("bad")}))
    with pytest.raises(KeyboardInterrupt), execution.user_errors():
        raise cancelled


def test_cancelling_a_task_group_frees_the_threads_waiting_on_it(tasks_defined_here, tmp_path):
    """What Ctrl-C does to the one-process fits that run side by side in driver threads: their tasks end now, and
    a task the group receives after the cancel ends at once."""
    group = execution.TaskGroup()
    outcome: List[BaseException] = []

    def wait() -> None:
        try:
            execution.run_remote(_waits, str(tmp_path / "started"), group=group)
        except BaseException as exc:  # noqa: BLE001 - what the thread saw is the test's result
            outcome.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():  # the task is running
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    group.cancel()
    thread.join(60)
    assert not thread.is_alive() and len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        execution.run_remote(_waits, str(tmp_path / "later"), group=group)
    assert time.monotonic() - started < 60  # not the task's 600 s
