"""Headless Chromium for the report tests: one way to load a page and read its DOM after layout (and scripts)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")


def dump_dom(page: Path, profile: Path, width: Optional[int] = None, height: int = 900) -> str:
    """The page's DOM once Chromium has laid it out and run its scripts; fails on a console error."""
    assert CHROMIUM is not None
    window = [f"--window-size={width},{height}", "--hide-scrollbars"] if width else []
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000", *window, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console_errors, console_errors
    return result.stdout
