"""The CI smoke test: the real entrypoint, as a subprocess, on a tiny generated POLA sample and a local
single-node Ray, through every stage; then the same command again reuses every stage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _kon(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: ./mlflow.db in cwd
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1500
    )


# A kon_ray log line as conf/hydra/job_logging/kon.yaml formats it, from a kon_ray logger.
KON_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING|ERROR) kon_ray(\.[\w.]+)?: ")


def assert_terminal_is_kon_rays(done: subprocess.CompletedProcess) -> None:
    """Nothing but kon_ray's own lines on the terminal: Ray's, Ray Data's, MLflow's and Python's warnings belong in
    run.log or Ray's session log."""
    assert done.stdout == "", done.stdout[:2000]
    strays = [line for line in done.stderr.splitlines() if line.strip() and not KON_LINE.match(line)]
    assert not strays, "\n".join(strays[:20])


@pytest.mark.slow
def test_the_whole_pipeline_runs_end_to_end_on_a_local_ray(tmp_path):
    data, run = tmp_path / "data" / "POLA", tmp_path / "run"
    made = _kon("kon_ray.synth", "+dataset=POLA", "debug=tiny", f"synth.output={data}",
                f"hydra.run.dir={tmp_path / 'synth'}", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]

    args = ["kon_ray.run", "+dataset=POLA", "debug=tiny", f"dataset.path={data}", f"output_dir={run}",
            f"hydra.run.dir={run}"]
    done = _kon(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-5000:]
    for stage in ("ingest", "preprocess", "drift", "segment", "train", "infer"):
        assert f"stage {stage}: finished" in done.stderr
    assert f"outputs in {run}" in done.stderr
    assert_terminal_is_kon_rays(done)

    assert {p.name for p in (run / "features").iterdir()} >= {"train", "test", "current", "feature_state.json"}
    assert {p.name for p in (run / "drift").iterdir()} >= {"drift_report.json", "drift_summary.txt",
                                                         "drift_report.html"}
    for population in ("domestic", "industrial"):
        assert (run / "models" / population / "model.ubj").stat().st_size > 0
        report = json.loads((run / "reports" / f"{population}.json").read_text())
        test = report["splits"]["test"]
        # a learnable label: the model must beat always answering the majority class by a clear margin
        assert test["accuracy"] > test["baseline"]["accuracy"] + 0.15, (population, test["accuracy"])
        assert (run / "reports" / f"{population}.html").read_text().count("<svg") >= 2
    assert (run / "run.log").read_text().count("finished") >= 6
    assert (tmp_path / "mlflow.db").exists()  # tracked to the default local sqlite store

    again = _kon(*args[:-2], f"output_dir={tmp_path / 'run2'}", f"hydra.run.dir={tmp_path / 'run2'}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reused (key") == 6
