"""A newcomer's first hour (issue 18, items 2-6): each mistake ends in one line that names the key and the fix.

- A typo in a key, with or without `+`, names the closest valid key; a value of the wrong type names the type;
  Hydra's "To append to your config use +..." advice never reaches the user for a key the schema does not have.
- The standalone drift command checks its inputs before Ray starts and names its own keys.
- A missing data folder of a known dataset names the exact generator command.
- A run that never started, and the generator, leave no run folder; a folder that was there before is kept.
- Single runs and sweeps of a dataset share one cache, outputs/<dataset>/.cache.

Most checks call the commands' functions in-process; the few that need the real command line (Hydra's run folder,
a sweep) run it as a subprocess on tiny data, about 3 s each.

Item 1 (Ctrl-C in any stage: exit 130, one line, nothing published, MLflow KILLED) is tests/test_interrupt.py; item 8
(reports checked in headless Chromium at two widths) is tests/drift/test_html.py and tests/infer/test_html.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from kon_ray import cli
from kon_ray.config import CONF_DIR, KonConfig, load_config, schema_keys, unknown_key_error
from kon_ray.drift.__main__ import DriftStandaloneConfig, check_inputs
from kon_ray.drift.__main__ import register as register_drift
from kon_ray.errors import ConfigError, DataError
from tests.conftest import REPO, compose_config, generate_pola


def _preflight(argv, config_name="config", schema=KonConfig) -> tuple[int | None, str]:
    """(exit code or None when it passes, stderr) of the command-line check every command runs before Hydra."""
    import contextlib
    import io

    register_drift()  # the schemas, as each command's cli() registers them first (the run's and the drift check's)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            cli._preflight(config_name, list(argv), schema)
        except SystemExit as exit_:
            return exit_.code, err.getvalue()
    return None, err.getvalue()


# ---- item 2: unknown keys and wrong types -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "argv, line",
    [
        (["+dataset=POLA", "model.max_dept=4"], "unknown config key model.max_dept: did you mean model.max_depth?"),
        (["+dataset=POLA", "+model.max_dept=4"], "unknown config key model.max_dept: did you mean model.max_depth?"),
        (["+dataset=POLA", "++model.max_dept=4"], "unknown config key model.max_dept: did you mean model.max_depth?"),
        (["+dataset=POLA", "split.curent_months=3"], "did you mean split.current_months?"),
        (["+dataset=POLA", "modle.max_depth=3"], "did you mean model.max_depth?"),
        (["+dataset=POLA", "+foo=1"], "unknown config key foo: the config's keys are dataset, model,"),
        (["+dataset=POLA", "model.max_depth.x=1"], "model.max_depth is an integer, not a group of keys"),
        (["-m", "+dataset=POLA", "model.max_dept=4,6"], "did you mean model.max_depth?"),  # a sweep too
        (["+dataset=POLA", "model.eta=fast"], "model.eta: expected a float, got 'fast'"),
        (["+dataset=POLA", "model.max_depth=deep"], "model.max_depth: expected an integer, got 'deep'"),
        (["+dataset=POLA", "reuse=maybe"], "reuse: expected true or false, got 'maybe'"),
        (["+dataset=POLA", "stages=ingest"], "stages: expected a list, e.g. [a,b], got 'ingest'"),
        (["dataset.path=/data/POLA"], "no dataset chosen: add +dataset=NAME, one of CLIE, HFAC, POLA"),
    ],
)
def test_a_mistyped_key_or_value_is_one_line_naming_the_fix(argv, line):
    code, stderr = _preflight(argv)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("kon_ray: config error: ")
    assert line in stderr
    assert "To append" not in stderr and "+model" not in stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["+dataset=POLA"],
        ["+dataset=POLA", "model.max_depth=4", "debug=tiny", "cluster.num_cpus=2"],
        ["+dataset=POLA", "+hydra.job.env_set.KON_TEST=1", "hydra.run.dir=/tmp/x"],  # Hydra's own keys
        ["+dataset=POLA", "+dataset.columns.extra=int64", "++drift.column_types.kwh_m01=categorical"],  # dict entries
        ["-m", "+dataset=POLA", "model.max_depth=4,6"],
    ],
)
def test_valid_command_lines_pass(argv):
    assert _preflight(argv) == (None, "")


def test_the_drift_command_checks_its_own_schema():
    code, stderr = _preflight(["reference=a", "current=b", "output=c", "drift.psi_bin=3"], "drift_standalone",
                              DriftStandaloneConfig)
    assert code == 2 and "unknown config key drift.psi_bin: did you mean drift.psi_bins?" in stderr
    code, stderr = _preflight(["reference=a", "current=b", "outptu=c"], "drift_standalone", DriftStandaloneConfig)
    assert code == 2 and "unknown config key outptu: did you mean output?" in stderr


LOCAL_KEYS = ("kind, train_workers, cpus_per_train_worker, storage_path, address, num_cpus, object_store_gb,"
              " data_cpu_reserve")


@pytest.mark.parametrize(
    "argv, line",
    [
        (["+dataset=POLA", "cluster.instance_count=2"],  # cluster=local, the default
         f"unknown config key cluster.instance_count: a key of cluster=sagemaker, not of cluster=local (whose keys are"
         f" {LOCAL_KEYS})"),
        (["+dataset=POLA", "+cluster.instance_count=2"], "a key of cluster=sagemaker, not of cluster=local"),
        (["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265", "cluster.num_cpus=2"],
         "unknown config key cluster.num_cpus: a key of cluster=local, not of cluster=ray (whose keys are kind,"),
        (["+dataset=POLA", "cluster.num_cpus=2", "cluster=ray"], "cluster.num_cpus: a key of cluster=local, not of"),
        (["+dataset=POLA", "cluster=sagemaker", "cluster.address=http://h:8265"],
         "unknown config key cluster.address: a key of cluster=local|ray|ec2, not of cluster=sagemaker"),
        (["+dataset=POLA", "cluster=ray", "debug=tiny", "cluster.object_store_gb=1"],
         "cluster.object_store_gb: a key of cluster=local, not of cluster=ray"),
        (["-m", "+dataset=POLA", "cluster=local,ray", "cluster.nodes=2"],  # a sweep's cluster=local job
         "unknown config key cluster.nodes: a key of cluster=ray, not of cluster=local"),
        (["+dataset=POLA", "cluster.num_cpu=2"], "unknown config key cluster.num_cpu: did you mean cluster.num_cpus?"),
        (["+dataset=POLA", "cluster=ray", "cluster.nodes=many"], "cluster.nodes: expected an integer or null, got"),
    ],
)
def test_a_cluster_key_is_checked_against_the_chosen_kinds_schema(argv, line):
    code, stderr = _preflight(argv)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("kon_ray: config error: ")
    assert line in stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265", "cluster.nodes=3", "debug=tiny"],
        ["+dataset=POLA", "cluster=sagemaker", "cluster.instance_count=2", "cluster.spot_workers=true"],
        ["+dataset=POLA", "cluster=ec2", "cluster.max_workers=2", "cluster.train_workers=8"],
        ["+dataset=POLA", "cluster.num_cpus=2", "cluster.object_store_gb=1", "cluster.data_cpu_reserve=1"],
        ["-m", "+dataset=POLA", "cluster=ray", "cluster.nodes=2,3"],
    ],
)
def test_a_cluster_key_of_the_chosen_kind_passes(argv):
    assert _preflight(argv) == (None, "")


def test_the_drift_check_runs_on_a_local_ray_only():
    code, stderr = _preflight(["reference=a", "current=b", "output=c", "cluster.nodes=2"], "drift_standalone",
                              DriftStandaloneConfig)
    assert code == 2 and "unknown config key cluster.nodes: a key of cluster=ray, not of cluster=local" in stderr
    code, stderr = _preflight(["reference=a", "current=b", "output=c", "cluster=ray"], "drift_standalone",
                              DriftStandaloneConfig)
    assert (code, stderr) == (2, "kon_ray: config error: cluster: this command takes cluster=local (LocalCluster)"
                                 " only, not RayCluster\n")


def test_a_key_added_with_plus_is_a_config_error_not_a_frozen_instance_error(tmp_path):
    cfg = compose_config(["+dataset=POLA", "+model.max_dept=4"], tmp_path)  # Hydra composes it without a word
    with pytest.raises(ConfigError, match=r"model\.max_dept: did you mean model\.max_depth\?"):
        load_config(cfg)


def test_dict_entries_are_keys_and_the_suggestions_come_from_the_schema():
    assert unknown_key_error("dataset.columns.any_new_column", KonConfig) is None
    assert unknown_key_error("drift.column_types.kwh_m01", KonConfig) is None
    assert unknown_key_error("stages.0", KonConfig) is None
    assert "model.max_depth" in schema_keys(KonConfig) and "dataset.segment" in schema_keys(KonConfig)


def test_the_real_command_says_did_you_mean_and_creates_nothing(tmp_path):
    done = _command("kon_ray.run", "+dataset=POLA", "+model.max_dept=4", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    expected = "kon_ray: config error: unknown config key model.max_dept: did you mean model.max_depth?"
    assert done.stderr.strip() == expected
    assert list(tmp_path.iterdir()) == []


def test_the_real_command_refuses_a_key_of_another_cluster_kind(tmp_path):
    done = _command("kon_ray.run", "+dataset=POLA", "cluster.instance_count=2", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("kon_ray: config error: unknown config key cluster.instance_count: a key of"
                                   f" cluster=sagemaker, not of cluster=local (whose keys are {LOCAL_KEYS})")
    assert list(tmp_path.iterdir()) == []


# ---- item 3: the standalone drift command ------------------------------------------------------------------------

@pytest.fixture
def parquet(tmp_path) -> Path:
    path = tmp_path / "good.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0]}), path)
    return path


def _drift_config(tmp_path, **keys) -> DriftStandaloneConfig:
    from kon_ray.drift.__main__ import load

    register_drift()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="drift_standalone", overrides=[f"{k}={v}" for k, v in keys.items()])
    return load(cfg)


@pytest.mark.parametrize(
    "keys, error, line",
    [
        ({"reference": "{tmp}/none.parquet"}, DataError, "none.parquet: no such file or folder (reference)"),
        ({"current": "{tmp}/none"}, DataError, "none: no such file or folder (current)"),
        ({"current": "{tmp}/empty"}, DataError, "empty: no .parquet files found (current)"),
        ({"current": "{tmp}/text.parquet"}, DataError, "text.parquet: not a readable Parquet file"),
        ({"reference": None, "reference_summary": "{tmp}/none.json"}, DataError,
         "none.json: no such file (reference_summary)"),
        ({"reference": None, "reference_summary": "{tmp}/bad.json"}, DataError,
         "bad.json: not valid JSON"),
        ({"output": "/proc/kon_ray_report"}, ConfigError, "output=/proc/kon_ray_report is not writable"),
    ],
)
def test_drift_inputs_are_checked_naming_the_commands_own_keys(keys, error, line, parquet, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.parquet").write_text("customer_id,kwh\n1,2\n")
    (tmp_path / "bad.json").write_text('{"edges": ')
    given = {"reference": str(parquet), "current": str(parquet), "output": str(tmp_path / "report"), **keys}
    given = {k: ("null" if v is None else v.format(tmp=tmp_path)) for k, v in given.items()}
    with pytest.raises(error) as info:
        check_inputs(_drift_config(tmp_path, **given))
    assert line in str(info.value)
    assert "dataset.path" not in str(info.value)
    if "text.parquet" in line:
        assert str(info.value).endswith("(current)")


def test_the_drift_command_stops_before_ray_starts(parquet, tmp_path, monkeypatch, caplog):
    from kon_ray.cluster import local
    from kon_ray.drift import __main__ as drift_main

    def no_ray(*_args, **_kwargs):
        raise AssertionError("Ray was started before the inputs were checked")

    monkeypatch.setattr(local, "init_local_ray", no_ray)
    register_drift()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="drift_standalone", overrides=[
            f"reference={tmp_path / 'missing'}", f"current={parquet}", f"output={tmp_path / 'report'}"])
    with caplog.at_level("ERROR", logger="kon_ray"):
        assert drift_main.main(cfg) == 3
    assert f"data error: {tmp_path / 'missing'}: no such file or folder (reference)" in caplog.text
    assert not (tmp_path / "report").exists()


# ---- item 4: a missing data folder names the generator command --------------------------------------------------

@pytest.mark.parametrize(
    "overrides, command",
    [
        (["+dataset=CLIE"], "python -m kon_ray.synth +dataset=CLIE"),
        (["+dataset=HFAC", "dataset.path={tmp}/my data/HFAC"],
         "python -m kon_ray.synth +dataset=HFAC dataset.path='{tmp}/my data/HFAC'"),
    ],
)
def test_a_missing_data_folder_names_the_generator_command(overrides, command, tmp_path, monkeypatch, caplog):
    from kon_ray.run import main

    monkeypatch.chdir(tmp_path)  # data/CLIE is relative: not there in an empty folder
    overrides = [o.format(tmp=tmp_path) for o in overrides] + ["tracking=off", "stages=[ingest]"]
    with caplog.at_level("ERROR", logger="kon_ray"):
        assert main(compose_config(overrides, tmp_path)) == 3
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "no such file or folder (dataset.path); generate it with: " + command.format(tmp=tmp_path) in errors[0]


# ---- item 5: no run folder for a run that never started, nor for the generator -----------------------------------

def test_a_config_error_leaves_no_run_folder(tmp_path):
    """The thresholds are checked after Hydra made outputs/POLA/<time>/ (run.log, .hydra): all of it goes again."""
    done = _command("kon_ray.run", "+dataset=POLA", "drift.psi_moderate=0.3", "drift.psi_high=0.2", cwd=tmp_path)
    assert done.returncode == 2 and "drift.psi_moderate" in done.stderr
    assert list(tmp_path.iterdir()) == []  # not even outputs/


def test_a_run_folder_that_was_there_before_is_kept(tmp_path):
    run = tmp_path / "mine"
    (run / "notes").mkdir(parents=True)
    done = _command("kon_ray.run", "+dataset=POLA", "cluster=ray", f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 2 and "cluster.address" in done.stderr
    assert sorted(p.name for p in run.iterdir()) == ["notes"]  # Hydra's run.log and .hydra/ removed, nothing else


def test_the_generator_writes_its_data_and_nothing_else(tmp_path):
    done = _command("kon_ray.synth", "+dataset=POLA", "synth.rows=500", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no outputs/POLA/<time>/
    assert sorted(p.name for p in (tmp_path / "data" / "POLA").iterdir()) == ["_manifest.json", "part-00000.parquet"]


# ---- item 6: one cache per dataset for single runs and sweeps -----------------------------------------------------

def test_a_sweep_job_uses_the_single_runs_cache(tmp_path, monkeypatch):
    """In a sweep, the job's run folder is multirun/POLA/<time>/<n>; its cache is still outputs/POLA/.cache."""
    from kon_ray.context import RunContext
    from kon_ray.pipeline import cache_root
    from kon_ray.run import _default_cache_dir

    monkeypatch.chdir(tmp_path)
    single = load_config(compose_config(["+dataset=POLA"]))  # (also registers the schemas)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        full = compose(config_name="config", overrides=["+dataset=POLA", "hydra.mode=MULTIRUN"],
                       return_hydra_config=True)
    with open_dict(full):
        full.hydra.runtime.output_dir = str(tmp_path / "multirun" / "POLA" / "2026-01-01_00-00-00" / "0")
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(full)
    try:
        job = full.copy()
        with open_dict(job):
            del job["hydra"]
        _default_cache_dir(job)
        config = load_config(job)
    finally:
        HydraConfig.instance().cfg = saved
    single_root = cache_root(RunContext(config=single, plain={}, run_dir="outputs/POLA/2026-01-01_00-00-01"))
    assert config.cache_dir == str(tmp_path / "outputs" / "POLA" / ".cache") == single_root


def test_a_sweep_reuses_what_a_single_run_published(tmp_path):
    data = generate_pola(tmp_path / "data" / "POLA", 300)
    common = ["+dataset=POLA", f"dataset.path={data}", "stages=[ingest]", "tracking=off"]
    single = _command("kon_ray.run", *common, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    sweep = _command("kon_ray.run", "-m", *common, "model.max_depth=3", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    cache = tmp_path / "outputs" / "POLA" / ".cache"
    ingest = [p.name for p in cache.iterdir()]
    assert len(ingest) == 1 and ingest[0].startswith("ingest-")
    assert f"stage ingest: reused (key {ingest[0][len('ingest-'):]}) from {cache / ingest[0]}" in sweep.stderr
    assert list((tmp_path / "multirun").glob("POLA/*/.cache")) == []


def _command(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
