"""`python -m kon_ray.drift`: the Hydra app, reference_summary= reuse, and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from kon_ray.config import CONF_DIR
from kon_ray.drift.__main__ import main, register
from tests.conftest import REPO
from tests.drift.conftest import make_frames


def _cfg(*overrides: str):
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="drift_standalone", overrides=list(overrides))


@pytest.mark.slow  # four checks, each a few Ray Data executions
def test_standalone_check_and_reuse_of_the_reference_summary(ray_session, tmp_path):
    ref, cur = make_frames(500, 300)
    os.makedirs(tmp_path / "ref")
    pq.write_table(pa.Table.from_pandas(ref, preserve_index=False), tmp_path / "ref" / "a.parquet")
    pq.write_table(pa.Table.from_pandas(cur, preserve_index=False), tmp_path / "cur.parquet")
    first, second = tmp_path / "out1", tmp_path / "out2"
    assert main(_cfg(f"reference={tmp_path / 'ref'}", f"current={tmp_path / 'cur.parquet'}", f"output={first}",
                     "exclude=[customer_id]")) == 0
    assert main(_cfg(f"reference_summary={first / 'reference_summary.json'}", f"current={tmp_path / 'cur.parquet'}",
                     f"output={second}")) == 0
    a = json.loads((first / "drift_report.json").read_text())
    b = json.loads((second / "drift_report.json").read_text())
    assert a["features"] == b["features"] and a["summary"] == b["summary"]
    # exit codes: a missing current dataset is a data error (3); the gate stops with 4
    assert main(_cfg(f"reference_summary={first / 'reference_summary.json'}", f"current={tmp_path / 'nope'}",
                     f"output={tmp_path / 'x'}")) == 3
    assert main(_cfg(f"reference_summary={first / 'reference_summary.json'}", f"current={tmp_path / 'cur.parquet'}",
                     f"output={tmp_path / 'y'}", "drift.fail_on_drift=true")) == 4


def test_config_errors_exit_2_before_ray_starts(tmp_path):
    assert main(_cfg("current=a", f"output={tmp_path}")) == 2  # neither reference nor reference_summary
    env = dict(os.environ, RAY_ADDRESS="", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "kon_ray.drift", "current=a", "output=b", "drift.psi_bins=1",
                             "reference=r"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    output = result.stdout + result.stderr  # Hydra's log goes to stdout
    assert result.returncode == 2, output[-1500:]
    assert "config error: drift.psi_bins must be >= 2, got 1" in output
