"""`python -m kon_ray.synth`: writes the parts and the manifest; a config mistake is one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _synth(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "kon_ray.synth", *args, f"hydra.run.dir={tmp_path / 'hydra'}"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_writes_parts_and_manifest(tmp_path):
    out = tmp_path / "POLA"
    overrides = ["synth.rows=1200", "synth.rows_per_file=500", "synth.workers=1", f"synth.output={out}"]
    done = _synth("+dataset=POLA", *overrides, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows"] == 1200 and manifest["drift_window_start"] == "2026-05-01"
    assert "rows/s" in done.stdout + done.stderr  # one progress line per part
    assert not any(p.name.startswith("POLA._tmp") for p in tmp_path.iterdir())


def test_cli_config_errors_exit_2_with_one_line(tmp_path):
    missing = _synth(tmp_path=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "+dataset=" in missing.stderr
    bad = _synth("+dataset=POLA", "synth.drift=-1", tmp_path=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.strip().endswith("config error: synth.drift must be >= 0, got -1.0")
    unknown = _synth("+dataset=NOPE", tmp_path=tmp_path)
    assert unknown.returncode == 2


def test_cfg_job_shows_only_what_the_generator_reads(tmp_path):
    command = [sys.executable, "-m", "kon_ray.synth", "+dataset=POLA", "--cfg", "job"]  # as a user types it
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    top = sorted(line.split(":")[0] for line in done.stdout.splitlines() if line and not line.startswith(" "))
    assert top == ["dataset", "synth"]  # conf/synth.yaml: no model, cluster, drift, tracking, stages, output_dir
    assert "name: POLA" in done.stdout and "rows: null" in done.stdout


def test_the_generator_names_its_own_command_and_one_line_per_mistake(tmp_path):
    missing = _synth(tmp_path=tmp_path)
    assert missing.stderr.strip().endswith(
        "config error: no dataset chosen: add +dataset=NAME, one of CLIE, HFAC, POLA"
        " (e.g. python -m kon_ray.synth +dataset=POLA)")
    unknown = _synth("+dataset=NOPE", tmp_path=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.strip().count("\n") == 0
    assert "dataset/NOPE" in unknown.stderr and "(available: CLIE, HFAC, POLA)" in unknown.stderr
    pipeline_key = _synth("+dataset=POLA", "model.max_depth=3", tmp_path=tmp_path)
    assert pipeline_key.returncode == 2 and pipeline_key.stderr.strip() == (
        "kon_ray: config error: unknown config key model.max_depth: the config's keys are dataset, synth")
    assert not (tmp_path / "hydra").exists()  # no run folder left by a command that never started
