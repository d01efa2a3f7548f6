"""drift_report.html in real headless Chromium: the table and the plots render, and nothing fails (the page has
no script at all, so there is nothing to error; the console is checked anyway). No Ray needed."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from kon_ray.drift.compare import categorical_feature, numeric_feature, summarise
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.html import render
from kon_ray.drift.prediction import not_available
from kon_ray.drift.reference import NumericReference
from kon_ray.drift.report import build_report, summary_text

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CFG = DriftConfig()


def _report() -> dict:
    # KS edges -inf, 1, 2, 3, +inf; PSI bins (-inf, 1], (1, 2], (2, inf), then -inf, +inf, missing
    edges = np.array([-np.inf, 1.0, 2.0, 3.0, np.inf])
    ref = NumericReference(ks_edges=edges, ks_slots=np.array([0, 0, 0, 10, 0, 10, 0, 10, 0, 0, 0, 1]),
                           psi_edges=np.array([1.0, 2.0]), psi_counts=np.array([10, 10, 10, 0, 0, 1]))
    features = [
        numeric_feature("kwh <&>", ref, np.array([0, 0, 0, 2, 0, 5, 0, 20, 3, 0, 0, 0]),
                        np.array([2, 5, 23, 0, 0, 0]), CFG),
        categorical_feature("tariff", {"A": 50, "B": 40, None: 10}, {"A": 20, "B": 60, "C": 20}, CFG),
        categorical_feature("stable", {"x": 50, "y": 50}, {"x": 49, "y": 51}, CFG),
    ]
    summary = summarise(features, CFG, not_available("no model available: test"))
    return build_report(features, summary, "ref/", "cur/", {"reference": 31, "current": 30})


def test_summary_text_names_every_feature_and_the_verdict():
    text = summary_text(_report())
    assert "2 of 3 features drifted" in text and "DRIFT FLAG RAISED" in text
    assert "no model available: test" in text
    for name in ("kwh <&>", "tariff", "stable"):
        assert name in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(tmp_path):
    html = render(_report(), plots=8)
    assert "<script" not in html and not re.search(r"(src|href)=|url\(|https?://", html)  # self-contained
    page = tmp_path / "drift_report.html"
    page.write_text(html)
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'id="severity-table"' in dom
    assert len(re.findall(r"<tr>", dom)) == 1 + 3  # header + one row per feature
    assert "kwh &lt;&amp;&gt;" in dom  # names are escaped, not markup
    assert dom.count("<svg") == 2  # the two drifted features are plotted
    assert len(re.findall(r'<rect class="bar"', dom)) == 2 * 4 + 2 * 4  # ref+cur per bin / category
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console_errors, console_errors
