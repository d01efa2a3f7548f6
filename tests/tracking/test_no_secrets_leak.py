"""No secret leaks: plant secrets the ways people paste them and search everything a run writes for them.

Planted: a password in the tracking URI (the server ignores it; the client would send it as basic auth), a token
handed to the job through Hydra's `hydra.job.env_set` (so it sits in the composed Hydra config), and AWS and
MLflow credentials in the environment. Searched: the terminal output, every file of the run folder and of the
stage folders it links to (.hydra dumps, run.log, reports), Ray's own session logs for this run, and what reached
the MLflow server (params, tags, metric names, every artifact, downloaded through the client).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List

import pytest

from tests.conftest import generate_pola
from tests.tracking.conftest import subprocess_env

URL_PASSWORD = "PLANTED-url-pw-7f3a9c"
JOB_TOKEN = "PLANTED-job-token-51be02"
AWS_SECRET = "PLANTED-aws-secret-c0ffee"
MLFLOW_PASSWORD = "PLANTED-mlflow-pw-d00d"
SECRETS = (URL_PASSWORD, JOB_TOKEN, AWS_SECRET, MLFLOW_PASSWORD)


def _files_under(root: Path) -> Iterable[Path]:
    for folder, _, files in os.walk(root, followlinks=True):  # the run folder links to the stage folders
        for name in files:
            yield Path(folder) / name


def _leaks(paths: Iterable[Path]) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for secret in SECRETS:
            if secret.encode() in data:
                found.setdefault(str(path), []).append(secret)
    return found


@pytest.mark.slow
def test_planted_secrets_appear_in_no_output(tmp_path, mlflow_server):
    data = generate_pola(tmp_path / "POLA", 3000)
    run = tmp_path / "runs" / "run"
    uri = mlflow_server.replace("http://", f"http://kon:{URL_PASSWORD}@")
    env = subprocess_env(AWS_SECRET_ACCESS_KEY=AWS_SECRET, MLFLOW_TRACKING_PASSWORD=MLFLOW_PASSWORD)
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "kon_ray.run", "+dataset=POLA", f"dataset.path={data}", f"output_dir={run}",
         f"hydra.run.dir={run}", "stages=[ingest,preprocess,segment,drift]", f"tracking.uri={uri}",
         "tracking.experiment=secrets", f"+hydra.job.env_set.KON_API_TOKEN={JOB_TOKEN}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    terminal = done.stdout + done.stderr
    assert not [s for s in SECRETS if s in terminal]
    assert "kon:***@127.0.0.1" in (run / ".hydra" / "config.yaml").read_text()  # masked, not dropped

    files = list(_files_under(tmp_path))
    assert any(p.name == "drift_report.html" for p in files) and any(p.name == "hydra.yaml" for p in files)
    assert _leaks(files) == {}

    sessions = set(re.findall(r"(/tmp/ray/session_[\w-]+)/logs", terminal))
    assert sessions, "the run names its Ray session's log folder"
    for session in sessions:
        assert _leaks(_files_under(Path(session) / "logs")) == {}

    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    (experiment,) = [e for e in client.search_experiments() if e.name == "secrets"]
    (tracked,) = client.search_runs([experiment.experiment_id])
    recorded = repr((tracked.data.params, tracked.data.tags, sorted(tracked.data.metrics)))
    assert "dataset.path" in tracked.data.params and not [s for s in SECRETS if s in recorded]
    artifacts = Path(download_artifacts(run_id=tracked.info.run_id, dst_path=str(tmp_path / "artifacts"),
                                        tracking_uri=mlflow_server))
    downloaded = list(_files_under(artifacts))
    assert any(p.name == "run.log" for p in downloaded)
    assert _leaks(downloaded) == {}
