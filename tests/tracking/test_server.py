"""Integration: `python -m kon_ray.run` (and a `-m` sweep) against a real `mlflow server` on 127.0.0.1, read back
with MlflowClient; the default local sqlite store; tracking=off without MLflow.

The CLI runs are the real entry point (Hydra composition, job logging, callbacks, multirun, exit codes) on the
stage the tiny data supports, ingest, which needs no Ray: `_kon` skips starting one (`init_local_ray` stubbed
in the child process), so these tests do not depend on a Ray starting on a loaded machine. With
`ray_address=...` the child joins that Ray instead (for runs that go past ingest). The in-process test logs the run
folder the real pipeline wrote (both models, registry included) to that server and to one of the MLflow version
infra/ deploys (`mlflow_server_pair`), the server/client pair the README promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray.config import load_config, to_plain
from kon_ray.tracking.registry import load_bundles, resolve
from kon_ray.tracking.tracker import tracked_run
from tests.conftest import REPO, compose_config
from tests.tracking.conftest import subprocess_env
from tests.tracking.test_tracker import _artifacts

CLI_TIMEOUT = 300


_NO_RAY_CLI = """
import sys
import kon_ray.cluster.local
kon_ray.cluster.local.init_local_ray = lambda cluster: None  # ingest-only runs need no Ray
from kon_ray.run import cli
sys.argv = ["kon_ray.run", *sys.argv[1:]]
cli()
"""


def _kon(args, cwd: Path, ray_address: str | None = None) -> subprocess.CompletedProcess:
    """`python -m kon_ray.run ARGS` in `cwd`: joining `ray_address`, or without Ray for ingest-only runs."""
    command = ["-m", "kon_ray.run"] if ray_address else ["-c", _NO_RAY_CLI]
    env = subprocess_env(RAY_ADDRESS=ray_address) if ray_address else subprocess_env()
    return subprocess.run([sys.executable, *command, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(uri: str, experiment: str):
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.mark.slow
@pytest.mark.parametrize("server", ["mlflow_server", "mlflow_server_pair"])
def test_a_full_run_folder_over_http_lands_on_the_server_with_registered_models(tmp_path, request, server,
                                                                               pipeline_run):
    """On the locked MLflow's server, and on the version infra/ deploys (the supported pair: README, "Tracking")."""
    mlflow_server = request.getfixturevalue(server)
    cfg = compose_config(["+dataset=POLA", f"tracking.uri={mlflow_server}", "tracking.experiment=http-full",
                          "tracking.register_models=true"], tmp_path)
    config, plain = load_config(cfg), to_plain(cfg)
    with tracked_run(config, plain) as tracker:
        pipeline_run.log_to(tracker)
    (run,) = _runs(mlflow_server, "http-full")
    client = _client(mlflow_server)
    drift = pipeline_run.metrics["drift"]
    assert run.info.status == "FINISHED" and run.data.tags["drift_flag"] == str(bool(drift["drift_flag"])).lower()
    assert run.data.metrics["psi/kwh_lag01"] == pytest.approx(drift["psi/kwh_lag01"])
    metadata = json.loads((pipeline_run.stage_folder("train") / "industrial" / "metadata.json").read_text())
    curve = client.get_metric_history(run.info.run_id, "industrial/curve/validation_mlogloss")
    assert len(curve) == metadata["rounds_trained"]
    assert {"drift/drift_report.html", "models/industrial/metadata.json"} <= _artifacts(client, run.info.run_id)
    for population in ("domestic", "industrial"):
        (version,) = client.search_model_versions(f"name = 'POLA-{population}'")
        assert version.run_id == run.info.run_id and f"{population}/test/macro_f1" in version.description
        # metrics logged after the models are there, and linked to their own population's model only
        test_f1 = pipeline_run.metrics["infer"][f"{population}/test/macro_f1"]
        assert run.data.metrics[f"{population}/test/macro_f1"] == pytest.approx(test_f1)
        linked = {m.key: m.value for m in client.get_logged_model(run.data.tags[f"model_id.{population}"]).metrics}
        assert linked[f"{population}/test/macro_f1"] == pytest.approx(test_f1)
        assert all(key.startswith(f"{population}/") for key in linked), sorted(linked)
    bundles, failed = load_bundles(resolve("POLA", config.tracking), config.tracking)
    (found,) = [b for b in bundles if b.population == "industrial"]
    assert failed == {} and found.features == metadata["features"]


@pytest.mark.slow
def test_the_cli_run_is_tracked_on_the_server(tmp_path, mlflow_server, tiny_pola):
    out = tmp_path / "run"
    result = _kon(["+dataset=POLA", f"dataset.path={tiny_pola}", f"output_dir={out}", "stages=[ingest]",
                   f"tracking.uri={mlflow_server}", "tracking.experiment=cli", f"hydra.run.dir={out}"],
                  tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "View run" not in result.stdout and "alembic" not in result.stderr  # MLflow kept quiet
    (run,) = _runs(mlflow_server, "cli")
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished"
    assert run.data.params["dataset.path"] == str(tiny_pola) and run.data.params["data.rows"] == "24"
    assert run.data.metrics["ingest/rows"] == 24 and "time/ingest" in run.data.metrics
    assert "+dataset=POLA" in run.data.tags["overrides"]
    artifacts = _artifacts(_client(mlflow_server), run.info.run_id)
    assert {"ingest/ingest.json", "run.log", ".hydra/config.yaml", ".hydra/overrides.yaml"} <= artifacts

    # data that cannot be read is refused from the Parquet footers before a run starts: no MLflow run at all
    result = _kon(["+dataset=POLA", f"dataset.path={tmp_path / 'missing'}", f"output_dir={out}-missing",
                   "stages=[ingest]", f"tracking.uri={mlflow_server}", "tracking.experiment=cli",
                   f"hydra.run.dir={out}-missing"], tmp_path)
    assert result.returncode == 3, result.stderr[-3000:]
    assert len(_runs(mlflow_server, "cli")) == 1

    # a run that fails at work (two records with one id, found by ingest) is recorded as failed, with its one-line
    # error, and exits with the documented code
    (part,) = sorted(tiny_pola.glob("*.parquet"))[:1]
    table = pq.read_table(part)
    at = table.schema.get_field_index("customer_id")
    ids = table.column(at).to_pylist()
    duplicated = tmp_path / "duplicated"
    duplicated.mkdir()
    pq.write_table(table.set_column(at, table.field(at), pa.array([ids[0]] + ids[:-1], table.field(at).type)),
                   duplicated / part.name)
    result = _kon(["+dataset=POLA", f"dataset.path={duplicated}", f"output_dir={out}-bad",
                   "stages=[ingest]", f"tracking.uri={mlflow_server}", "tracking.experiment=cli",
                   f"hydra.run.dir={out}-bad"], tmp_path)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "duplicate" in result.stderr, result.stderr[-3000:]
    failed = _runs(mlflow_server, "cli")[-1]
    assert failed.info.status == "FAILED" and failed.data.tags["error"].startswith("data error:")
    assert "run.log" in _artifacts(_client(mlflow_server), failed.info.run_id)


@pytest.mark.slow
def test_the_default_is_a_local_sqlite_store_in_the_working_directory(tmp_path, tiny_pola):
    result = _kon(["+dataset=POLA", f"dataset.path={tiny_pola}", "stages=[ingest]"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns" / "0" / "meta.yaml").exists()
    (run,) = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "kon_ray")
    assert run.info.status == "FINISHED" and run.data.metrics["ingest/rows"] == 24


@pytest.mark.slow
def test_a_sweep_is_one_parent_run_with_a_child_per_job_and_a_summary(tmp_path, mlflow_server, tiny_pola):
    sweep_dir = tmp_path / "sweep"
    result = _kon(["-m", "+dataset=POLA", f"dataset.path={tiny_pola}", "stages=[ingest]",
                   f"tracking.uri={mlflow_server}", "tracking.experiment=sweep", "tracking.best_metric=ingest/rows",
                   "model.max_depth=2,3", f"hydra.sweep.dir={sweep_dir}", f"cache_dir={tmp_path / 'cache'}",
                   "output_dir=${hydra:runtime.output_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    runs = _runs(mlflow_server, "sweep")
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert parent.info.status == "FINISHED" and summary["parent_run_id"] == parent.info.run_id
    assert [job["params"] for job in summary["jobs"]] == [{"model.max_depth": "2"}, {"model.max_depth": "3"}]
    assert {c.data.params["model.max_depth"] for c in children} == {"2", "3"}
    best = summary["best"]["all"]
    assert best["value"] == 24 and best["run_id"] in {c.info.run_id for c in children}
    assert parent.data.metrics["best/ingest/rows"] == 24
    assert "sweep_summary.json" in _artifacts(_client(mlflow_server), parent.info.run_id)
    assert "best by ingest/rows" in result.stdout
    # the shared stage ran once: the second job reused the first job's ingest (the pipeline's keyed cache)
    first, second = sorted(children, key=lambda r: r.data.tags["sweep.job"])
    assert "cached.ingest" not in first.data.tags and second.data.tags["cached.ingest"] == "true"


def test_tracking_off_runs_without_importing_mlflow(tmp_path, tiny_pola):
    code = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from tests.conftest import compose_config
from kon_ray.config import load_config, to_plain
from kon_ray.run import run
from pathlib import Path
cfg = compose_config(["+dataset=POLA", "tracking=off", "stages=[ingest]", "dataset.path={tiny_pola}"],
                     Path({str(tmp_path)!r}))
assert run(load_config(cfg), to_plain(cfg))["ingest"]["rows"] == 24
print("mlflow imported:", any(m == "mlflow" or m.startswith("mlflow.") for m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=subprocess_env(),
                            capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mlflow imported: False" in result.stdout
    assert not (tmp_path / "mlflow.db").exists()
