"""drift_report.html in real headless Chromium: the table and the plots render, and nothing fails (the page has
no script at all, so there is nothing to error; the console is checked anyway). No Ray needed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kon_ray.drift.compare import categorical_feature, numeric_feature, summarise
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.html import render
from kon_ray.drift.prediction import not_available
from kon_ray.drift.reference import NumericReference
from kon_ray.drift.report import build_report, summary_text
from tests.chromium import dump_dom, needs_chromium

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


@needs_chromium
def test_html_renders_in_headless_chromium(tmp_path):
    html = render(_report(), plots=8)
    assert "<script" not in html and not re.search(r"(src|href)=|url\(|https?://", html)  # self-contained
    page = tmp_path / "drift_report.html"
    page.write_text(html)
    dom = dump_dom(page, tmp_path / "profile")
    assert 'id="severity-table"' in dom
    assert len(re.findall(r"<tr>", dom)) == 1 + 3  # header + one row per feature
    assert "kwh &lt;&amp;&gt;" in dom  # names are escaped, not markup
    assert dom.count("<svg") == 2  # the two drifted features are plotted
    assert len(re.findall(r'<rect class="bar"', dom)) == 2 * 4 + 2 * 4  # ref+cur per bin / category
    # (no console error: dump_dom fails on one)


def _wide_report() -> dict:
    """A numeric feature whose edges need many digits (the audit's "(1.1e+03, 1.12e..." case), with infinities."""
    edges = np.array([1103.5, 1104.25, 1120.125, 123456.75, 1234567.5])
    n = len(edges)
    ks_edges = np.concatenate(([-np.inf], edges, [np.inf]))
    ref = NumericReference(ks_edges=ks_edges, ks_slots=np.array([0, 3] + [0, 10] * n + [0, 4, 0, 2]),
                           psi_edges=edges, psi_counts=np.array([1] * (n + 1) + [3, 4, 2]))
    cur_psi = np.array([30, 1, 1, 1, 1, 1, 0, 9, 1])
    features = [numeric_feature("monthly_kwh_consumption_previous_quarter", ref,
                                np.array([0, 0] + [0, 5] * n + [0, 9, 0, 1]), cur_psi, CFG)]
    summary = summarise(features, CFG, not_available("no model available: test"))
    return build_report(features, summary, "ref/", "cur/", {"reference": 59, "current": 45})


# Measures every axis label against its SVG and the window; a test-only script added to a copy of the page.
MEASURE = """<script>
const out = [];
for (const t of document.querySelectorAll('svg text.label')) {
  const b = t.getBoundingClientRect(), s = t.ownerSVGElement.getBoundingClientRect();
  out.push([t.textContent, b.left >= s.left - 0.5 && b.right <= s.right + 0.5 && b.top >= s.top - 0.5
            && b.bottom <= s.bottom + 0.5 && b.right <= window.innerWidth, Math.round(s.width)]);
}
document.body.setAttribute('data-labels', JSON.stringify(out));
</script>"""


@needs_chromium
@pytest.mark.parametrize("width", [1280, 700])
def test_bin_labels_are_whole_and_inside_the_plot_at_two_widths(tmp_path, width):
    import html as html_lib
    import json

    report = _wide_report()
    page = tmp_path / "page.html"
    page.write_text(render(report, plots=8).replace("</body>", MEASURE + "</body>"))
    dom = dump_dom(page, tmp_path / "profile", width=width, height=1600)
    labels = json.loads(html_lib.unescape(re.search(r'data-labels="([^"]*)"', dom).group(1)))
    # whole labels with the fewest significant digits (at least 3) that tell neighbours apart: 4 digits print
    # 1103.5 and 1104.25 both as 1104, so 5 digits (1103.5, 1104.2, 1120.1, 1.2346e5, 1.2346e6)
    assert [text for text, _, _ in labels] == [
        "\u2264 1103.5", "(1103.5, 1104.2]", "(1104.2, 1120.1]", "(1120.1, 1.2346e5]", "(1.2346e5, 1.2346e6]",
        "> 1.2346e6", "-inf", "+inf", "missing"]
    assert all(inside for _, inside, _ in labels), labels  # nothing cut by the SVG's edge or the window
    assert all(svg_width <= width for _, _, svg_width in labels)
