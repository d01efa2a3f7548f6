"""Faults survived, through the real command line on generated POLA data: the driver killed in the middle of a
stage, a Ray worker killed while it computes features, and an object store far too small for the data.

Every test waits for a real event before it strikes (a Parquet part appearing in the stage's staging folder, a
Ray worker process whose title names the feature transform), never for a lucky moment after a sleep. Each run
starts its own local Ray in a subprocess, as a user's would. The training worker killed mid-fit is in
tests/train/test_train_stage.py (it needs the Ray Train loop's own hook to die after a given round).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from tests.conftest import generate_pola

pytestmark = pytest.mark.slow

ROWS = 40_000  # enough work units that the driver is killed mid-stage, not after it
STAGES = "stages=[ingest,preprocess,segment,drift]"
TRANSFORM_TASK = "_transform_block"  # Ray titles a worker process after the task it runs: ray::_transform_block


@pytest.fixture(scope="module")
def pola(tmp_path_factory) -> Path:
    return generate_pola(tmp_path_factory.mktemp("faults") / "POLA", ROWS, parts=4)


def _command(data: Path, run: Path, *overrides: str) -> List[str]:
    return [sys.executable, "-m", "kon_ray.run", "+dataset=POLA", f"dataset.path={data}", f"output_dir={run}",
            f"hydra.run.dir={run}", "tracking=off", STAGES, *overrides]


def _env() -> Dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)  # never the suite's shared Ray: each run starts its own
    return env


def _run(command: List[str], log: Path) -> int:
    with log.open("w") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=_env(), timeout=900).returncode


def _start(command: List[str], log: Path) -> subprocess.Popen:
    # output to a file, not a pipe nobody reads: Ray Data's progress lines would fill a pipe and block the run
    out = log.open("w")
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def _wait_for(event: Callable[[], object], proc: subprocess.Popen, what: str, timeout: float = 600) -> object:
    """Poll for `event` (a real state change, checked every 20 ms) while the run is alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = event()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before {what}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its Ray head, raylet and workers), as a lost node would."""
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(family, timeout=30)


def _outputs(run: Path) -> Dict[str, object]:
    """What preprocess and drift published, in a form where equal means identical content: every split's rows
    sorted by id (part files and row order depend on task scheduling), the fitted state and the drift report (whose
    input paths name this run's own folder)."""
    features = run / "features"
    found: Dict[str, object] = {}
    for split in ("train", "test", "current"):
        frame = pq.read_table(features / split).to_pandas()
        found[split] = frame.sort_values("customer_id").reset_index(drop=True)
    for name in ("feature_state.json", "split_summary.json"):
        found[name] = json.loads((features / name).read_text())
    report = (run / "drift" / "drift_report.json").read_text()
    found["drift_report.json"] = json.loads(report.replace(str(run.parent), "<runs>"))
    return found


def _assert_same_outputs(run: Path, reference: Dict[str, object]) -> None:
    got = _outputs(run)
    assert got.keys() == reference.keys()
    for name, expected in reference.items():
        if isinstance(expected, pd.DataFrame):
            assert len(got[name]) == len(expected) > 0, name
            pd.testing.assert_frame_equal(got[name], expected, check_exact=True, obj=name)
        else:
            assert got[name] == expected, name


@pytest.fixture(scope="module")
def reference(pola, tmp_path_factory) -> Dict[str, object]:
    """An uninterrupted run: what every interrupted or faulted run must reproduce exactly."""
    base = tmp_path_factory.mktemp("reference")
    run = base / "runs" / "run"
    assert _run(_command(pola, run), base / "run.out") == 0, (base / "run.out").read_text()[-3000:]
    return _outputs(run)


def _published(cache: Path, stage: str) -> List[Path]:
    return [p for p in cache.glob(f"{stage}-*/_manifest.json") if "._tmp-" not in p.parent.name]


def test_a_driver_killed_mid_stage_leaves_nothing_published_and_the_rerun_matches(pola, reference, tmp_path):
    run = tmp_path / "runs" / "run"
    cache = run.parent / ".cache"
    command = _command(pola, run)
    proc = _start(command, tmp_path / "killed.out")
    # the event: preprocess has begun writing its Parquet outputs into its staging folder
    _wait_for(lambda: list(cache.glob("preprocess-*._tmp-*/*/part-*.parquet")), proc, "preprocess writes a part")
    _kill_tree(proc)

    log = (tmp_path / "killed.out").read_text()
    assert "stage preprocess: started" in log and "stage preprocess: finished" not in log
    assert len(_published(cache, "ingest")) == 1
    assert _published(cache, "preprocess") == []  # half-written outputs never look complete
    assert not (run / "features").exists()
    assert list(cache.glob("preprocess-*._tmp-*"))  # the abandoned staging folder, until the re-run

    assert _run(command, tmp_path / "rerun.out") == 0, (tmp_path / "rerun.out").read_text()[-3000:]
    rerun = (tmp_path / "rerun.out").read_text()
    assert "stage ingest: reused" in rerun
    assert "left by an interrupted run" in rerun and "stage preprocess: finished" in rerun
    assert not list(cache.glob("*._tmp-*"))
    _assert_same_outputs(run, reference)


def _transform_worker(driver: int) -> Optional[psutil.Process]:
    try:
        descendants = psutil.Process(driver).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for proc in descendants:
        try:
            if TRANSFORM_TASK in " ".join(proc.cmdline()):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_a_worker_killed_while_computing_features_is_retried_and_the_output_matches(pola, reference, tmp_path):
    run = tmp_path / "runs" / "run"
    proc = _start(_command(pola, run), tmp_path / "run.out")
    victim = _wait_for(lambda: _transform_worker(proc.pid), proc, "a worker runs the feature transform")
    victim.kill()  # SIGKILL: the worker dies mid-task, as on an OOM kill or a lost spot node
    psutil.wait_procs([victim], timeout=30)
    assert not victim.is_running()
    assert proc.wait(timeout=900) == 0, (tmp_path / "run.out").read_text()[-3000:]
    log = (tmp_path / "run.out").read_text()
    # the victim was titled with the transform task, so it died inside one; the stage still finishes with every
    # unit's parts written exactly once (Ray retried the task; its line goes to Ray's session log, not the terminal)
    assert "stage preprocess: finished" in log
    _assert_same_outputs(run, reference)


SPILL_SCRIPT = """
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq, ray
from kon_ray import execution

path = sys.argv[1]
pq.write_table(pa.table({"x": np.arange(4_000_000, dtype=np.float64)}), path, row_group_size=500_000)
ray.init(num_cpus=2, object_store_memory=75 * 1024**2, include_dashboard=False, log_to_driver=False)
units = execution.plan([path], ["x"], workers=2, min_rows=1)


def widen(table, unit):  # 8 blocks of 500k x 4 float64 = 16 MB each: 128 MB kept in a 75 MiB object store
    x = table.column("x").to_numpy()
    return np.column_stack([x, x, x, x])


def total(block):
    return float(block.sum())


before = execution.spilled_bytes()
kept = execution.blocks(widen, units, estimated_bytes=1 << 40)  # too big for the driver: left in the store
assert kept.remote
sums = kept.map(total)
print(sum(sums) == 4 * float(np.arange(4_000_000, dtype=np.float64).sum()), execution.spilled_bytes() - before)
"""


def test_results_larger_than_the_object_store_spill_and_the_spill_is_counted(tmp_path):
    """The stages hand partials, not rows, through Ray's object store (kon_ray/execution.py); where results do stay
    in it (k-means blocks of a large train split) and outgrow it, Ray spills them to disk, every pass still
    completes, and execution.spilled_bytes() (what the pipeline reports per stage) counts the spill."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SPILL_SCRIPT, str(tmp_path / "x.parquet")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    correct, spilled = done.stdout.split()
    assert correct == "True"
    assert int(spilled) > 32 * 1024**2
