"""Shared helpers for the infrastructure tests (fixtures are in conftest.py).

These tests run under the MAIN virtualenv's pytest, but the infrastructure
tools (checkov, actionlint, shellcheck and the python-hcl2 parser) live in the
separate tools virtualenv `.venv-tools/` because their pins conflict with the
runtime stack. Everything that needs them therefore runs as a subprocess of
`.venv-tools/bin/...`. A missing tools virtualenv is a test FAILURE (not a
skip): run `make tools`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
WORKFLOWS = REPO / ".github" / "workflows"
TOOLS_VENV = Path(os.environ.get("KON_TOOLS_VENV", REPO / ".venv-tools"))
TOOLS_BIN = TOOLS_VENV / "bin"
ENVS = ("dev", "staging", "prod")

MAKE_TOOLS_HINT = (
    "the tools virtualenv {venv} is missing or incomplete ({what}). "
    "Create it with `make tools` (it installs checkov, actionlint, shellcheck "
    "and the HCL parser from requirements-tools.lock into .venv-tools/)."
)


def tool(name: str) -> Path:
    """Path of an executable in the tools venv; FAIL (not skip) if absent."""
    path = TOOLS_BIN / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(MAKE_TOOLS_HINT.format(venv=TOOLS_VENV, what=f"no {path}"), pytrace=False)
    return path


# ------------------------------------------------------------------ helpers
# The parser (python-hcl2 API, bc-python-hcl2 build) returns every attribute
# as a one-element list and every block as a list of dicts; expressions are
# kept as "${...}" strings.


def attr(body: dict, key: str, default=None):
    """Value of attribute `key` of a block body (unwrapped)."""
    if key not in body:
        return default
    value = body[key]
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def blocks(body: dict, key: str) -> list[dict]:
    """Nested blocks named `key` of a block body."""
    value = body.get(key, [])
    return [b for b in value if isinstance(b, dict)]


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def typed(hcl: dict, kind: str, type_: str, under: str = "") -> list[tuple[str, str, dict]]:
    """All (file, name, body) of `resource`/`data` blocks of a given type."""
    out = []
    for path, doc in sorted(hcl.items()):
        if not path.startswith(under):
            continue
        for entry in doc.get(kind, []):
            for t, named in entry.items():
                if t != type_:
                    continue
                for name, body in named.items():
                    out.append((path, name, body))
    return out


def resources(hcl: dict, type_: str, under: str = "") -> list[tuple[str, str, dict]]:
    return typed(hcl, "resource", type_, under)


def datas(hcl: dict, type_: str, under: str = "") -> list[tuple[str, str, dict]]:
    return typed(hcl, "data", type_, under)


def named_blocks(hcl: dict, kind: str, under: str = "") -> list[tuple[str, str, dict]]:
    """All (file, name, body) of single-label blocks such as variable/output/module."""
    out = []
    for path, doc in sorted(hcl.items()):
        if not path.startswith(under):
            continue
        for entry in doc.get(kind, []):
            for name, body in entry.items():
                out.append((path, name, body))
    return out


def locals_of(hcl: dict, path: str) -> dict:
    merged: dict = {}
    for entry in hcl.get(path, {}).get("locals", []):
        for k, v in entry.items():
            if not k.startswith("__"):
                merged[k] = v[0] if isinstance(v, list) and len(v) == 1 else v
    return merged


def variable_default(hcl: dict, directory: str, name: str):
    for path, vname, body in named_blocks(hcl, "variable", under=directory + "/"):
        if vname == name and os.path.dirname(path) == directory:
            return attr(body, "default")
    raise KeyError(f"variable {name} not declared in {directory}")


def module_calls(hcl: dict, under: str) -> list[tuple[str, str, dict]]:
    return named_blocks(hcl, "module", under=under)
