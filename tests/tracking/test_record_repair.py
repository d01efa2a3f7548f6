"""A tracking failure is never silent, and one command repairs it (issue 26).

Against real `mlflow server` processes on 127.0.0.1: a server killed after the drift stage was logged and restarted
before the run ends, a server down for the whole run, and the after-the-fact `python -m kon_ray.tracking.log`
(in-process and as the real command), which completes the run the pipeline started, or creates one, and is
idempotent: a run folder logged twice is one MLflow run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kon_ray import stages
from kon_ray.config import load_config, to_plain
from kon_ray.errors import ConfigError
from kon_ray.net import free_port
from kon_ray.run_index import INDEX_FILE
from kon_ray.tracking.log import log_run_folder, parse_arguments
from kon_ray.tracking.tracker import INCOMPLETE_TAG, TRACKING_FILE, tracked_run
from tests.conftest import REPO, compose_config
from tests.tracking.conftest import serve_mlflow, subprocess_env
from tests.tracking.record import assert_complete_record


class Server:
    """An `mlflow server` that can be killed and started again on the same port and store."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._running: Iterator[str] | None = None

    def start(self) -> None:
        self._running = serve_mlflow(self.root, None, self.port)
        next(self._running)

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()  # SIGTERM to its process group, then wait
            self._running = None


def _run_folder(tmp_path: Path, pipeline_run, plain) -> Path:
    """A run folder of its own whose index.json lists the shared pipeline run's stages (they stay where they were
    published) under this run's config: what the tracker and the log command read."""
    folder = tmp_path / "run"
    folder.mkdir(parents=True)
    index = json.loads((pipeline_run.folder / INDEX_FILE).read_text())
    (folder / INDEX_FILE).write_text(json.dumps(dict(index, config=plain, run_folder=str(folder))))
    return folder


def _tracked(tmp_path: Path, uri: str, experiment: str, folder: Path):
    cfg = compose_config(["+dataset=POLA", f"tracking.uri={uri}", f"tracking.experiment={experiment}"], tmp_path)
    cfg.output_dir = str(folder)
    return load_config(cfg), to_plain(cfg)


def _runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.slow  # one real MLflow server, down, started, killed mid-run and restarted; whole records logged
def test_a_server_down_or_killed_mid_run_is_reported_and_the_log_command_completes_it_once(tmp_path, pipeline_run,
                                                                                          monkeypatch):
    # a request to the killed server fails at once instead of after kon_ray's retry budget (~7 s a request): the
    # same record, seconds sooner; what the budget is for (a server back within it loses nothing) is not this test's
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    server = Server(tmp_path / "server")
    server.root.mkdir()
    try:
        # 1. no server for the whole run: the run goes on offline and says what is missing
        down = tmp_path / "down" / "run"
        config, plain = _tracked(tmp_path / "down", server.uri, "down", down)
        _run_folder(tmp_path / "down", pipeline_run, plain)
        with tracked_run(config, plain) as tracker:
            pipeline_run.log_to(tracker)
        assert tracker.offline and list(tracker.incomplete) == list(stages.STAGE_ORDER)
        record = json.loads((down / TRACKING_FILE).read_text())
        assert record["run_id"] is None and "no MLflow server answers" in record["offline"]
        with pytest.raises(ConfigError, match="no MLflow server answers"):  # still down: exit 2, nothing logged
            log_run_folder(str(down), [f"tracking.uri={server.uri}"])

        # 2. the server answers: the command creates the run once; a second call finds it complete
        server.start()
        first = log_run_folder(str(down), [f"tracking.uri={server.uri}"])
        assert log_run_folder(str(down), [f"tracking.uri={server.uri}"]) == first
        (run,) = _runs(server.uri, "down")
        assert_complete_record(server.uri, run.info.run_id)
        assert run.info.run_id == first and run.data.tags["logged_by"] == "kon_ray.tracking.log"

        # 3. a run whose server is killed once drift is logged, and back before the run ends
        killed = tmp_path / "killed" / "run"
        config, plain = _tracked(tmp_path / "killed", server.uri, "killed", killed)
        _run_folder(tmp_path / "killed", pipeline_run, plain)
        with tracked_run(config, plain) as tracker:
            for stage, metrics in pipeline_run.metrics.items():
                tracker.stage_finished(stage, 0.5, metrics, str(pipeline_run.stage_folder(stage)))
                if stage == "drift":
                    server.stop()  # train and infer find no server
                if stage == "infer":
                    server.start()  # the end of the run, and what is missing, are recorded
        assert list(tracker.incomplete) == ["train", "infer"]
        (run,) = _runs(server.uri, "killed")
        assert run.info.status == "FINISHED" and run.data.tags[INCOMPLETE_TAG] == "train,infer"
        assert "time/drift" in run.data.metrics and "time/train" not in run.data.metrics
        record = json.loads((killed / TRACKING_FILE).read_text())
        assert record["run_id"] == run.info.run_id and list(record[INCOMPLETE_TAG]) == ["train", "infer"]
        assert "python -m kon_ray.tracking.log " + str(killed) in tracker.repair_hint()

        # 4. the command completes that same run, sending nothing twice
        for _ in range(2):
            assert log_run_folder(str(killed), [f"tracking.uri={server.uri}"]) == run.info.run_id
        (repaired,) = _runs(server.uri, "killed")
        assert_complete_record(server.uri, repaired.info.run_id)
        from mlflow.tracking import MlflowClient

        assert len(MlflowClient(server.uri).get_metric_history(run.info.run_id, "time/drift")) == 1
        assert json.loads((killed / TRACKING_FILE).read_text())[INCOMPLETE_TAG] == {}
    finally:
        server.stop()


@pytest.mark.slow  # two real commands against the session's MLflow server
def test_the_command_line_says_what_is_missing_and_the_command_it_prints_repairs_it(tmp_path, tiny_pola,
                                                                                    mlflow_server):
    """The real commands, as a user meets them: a run whose server is down ends exit 6 with the repair command as
    its last line; that command, run as printed with the server that answers, logs the run."""
    down = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    env = subprocess_env()
    done = subprocess.run([sys.executable, "-m", "kon_ray.run", "+dataset=POLA", f"dataset.path={tiny_pola}",
                           "stages=[ingest]", f"tracking.uri={down}", "tracking.experiment=cli-down",
                           f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 6, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "tracking incomplete: outputs published, but MLflow" in last and "missing stages ingest" in last, last
    command = last.split("log them with: ", 1)[1].split()
    assert command == ["python", "-m", "kon_ray.tracking.log", str(out), f"tracking.uri={down}"]
    assert (out / "ingest" / "ingest.json").exists()  # the outputs are there

    logged = subprocess.run([sys.executable, *command[1:], f"tracking.uri={mlflow_server}"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert logged.returncode == 0, logged.stderr[-3000:]
    assert "logged " + str(out) in logged.stderr.strip().splitlines()[-1]
    (run,) = _runs(mlflow_server, "cli-down")
    assert run.info.status == "FINISHED" and run.data.metrics["ingest/rows"] == 24
    assert INCOMPLETE_TAG not in run.data.tags and run.data.params["data.rows"] == "24"


@pytest.mark.parametrize("argv, message", [
    ([], "give exactly one run folder"),
    (["a", "b"], "give exactly one run folder"),
    (["run", "model.eta=0.1"], "model.eta cannot be set when logging a finished run"),
])
def test_the_log_commands_arguments_are_checked(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_arguments(argv)


def test_a_folder_that_is_not_a_run_folder_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kon_ray.tracking.log", str(tmp_path)], cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"{tmp_path / INDEX_FILE} is missing: {tmp_path} is not a kon_ray run folder (or predates index.json)")
