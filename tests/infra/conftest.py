"""Fixtures for the infrastructure tests; helpers and the rationale are in infra_helpers.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from infra_helpers import MAKE_TOOLS_HINT, REPO, TOOLS_VENV, tool


@pytest.fixture(scope="session")
def tools_python() -> Path:
    return tool("python")


@pytest.fixture(scope="session")
def hcl(tools_python: Path) -> dict[str, dict]:
    """Parsed HCL of every .tf/.tfvars file under infra/, keyed by repo-relative path."""
    proc = subprocess.run(
        [str(tools_python), str(REPO / "scripts" / "hcl_to_json.py"), "infra"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        if "No module named 'hcl2'" in proc.stderr:
            pytest.fail(MAKE_TOOLS_HINT.format(venv=TOOLS_VENV, what="hcl2 not importable"), pytrace=False)
        pytest.fail(f"scripts/hcl_to_json.py failed:\n{proc.stderr}", pytrace=False)
    parsed = json.loads(proc.stdout)
    assert parsed, "no Terraform file found under infra/"
    return parsed
