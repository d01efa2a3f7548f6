"""The layering check of `make check` (scripts/check_layers.py), also in the fast tier: kon_ray's imports point only
down the layers the README draws, with no loop and few deferred imports."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_imports_point_only_down_the_layers():
    result = subprocess.run([sys.executable, "scripts/check_layers.py"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_check_sees_an_import_that_points_up(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import check_layers
    finally:
        sys.path.pop(0)
    rank = {unit: i for i, unit in enumerate(u for _, units in check_layers.LAYERS for u in units)}
    assert rank["errors"] < rank["execution"] < rank["drift"] < rank["tracking"] < rank["pipeline"] < rank["run"]
    assert check_layers.unit_of("kon_ray.drift.config") == "drift.config"  # a schema is in the base
    assert check_layers.unit_of("kon_ray.drift.__main__") == "commands"
    assert check_layers.cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
