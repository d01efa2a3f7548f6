"""The inference report (<population>.html) read in real headless Chromium at two window widths (issue 18, item 8):
no label is cut off at the edge of its plot (the importance chart's long feature names were clipped on the left),
none overlaps the bars, nothing is wider than the window, and a shortened name keeps the full one as its tooltip.

The report has no script; the test adds one to its copy of the page that measures, after layout, every SVG text
against its SVG's box (an SVG clips what falls outside it), and writes the numbers into the DOM that
`chromium --dump-dom` prints. No Ray needed.
"""

from __future__ import annotations

import json
import re
import string
from html import escape, unescape

import pytest

from kon_ray.infer.html import CSS, LABEL_CHARS, render, shorten, text_width
from tests.chromium import dump_dom, needs_chromium

CLASSES = ["alto_consumo", "bajo_consumo", "consumo_industrial_estacional_alto", "moroso"]
FEATURES = [
    "num_avg_consumption_last_6_months_log_over_tariff_category_residential_subsidized",  # 83 chars: shortened
    "date_last_payment_date_months_since_first_contract",  # 50
    "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW",  # the widest 48 characters there are
    "num_contracted_power_kw_negative",
    "kwh_cv",
]
ESTRATOS = ["0", "1", "sin_estrato_declarado"]


def _split(rows: int) -> dict:
    k = len(CLASSES)
    return {
        "rows": rows, "accuracy": 0.8, "macro_f1": 0.7, "log_loss": 0.6,
        "per_class": {c: {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 10, "predicted": 9} for c in CLASSES},
        "confusion": {"labels": CLASSES, "matrix": [[100 if i == j else 7 for j in range(k)] for i in range(k)]},
        "baseline": {"majority_class": "moroso", "accuracy": 0.3},
        "by": {
            "estrato": {e: {"rows": 40, "accuracy": 0.8, "macro_f1": 0.7, "baseline_accuracy": 0.3} for e in ESTRATOS},
            "cluster": {
                str(c): {"rows": 30, "accuracy": 0.9, "macro_f1": 0.8, "baseline_accuracy": 0.4} for c in range(4)
            },
        },
        "unknown_label_rows": 0,
    }


def _report() -> dict:
    return {
        "dataset": "POLA", "population": "industrial",
        "model": {"classes": CLASSES, "majority_class": "moroso", "best_iteration": 52, "rounds_trained": 63},
        "splits": {"test": _split(400), "current": _split(500)},
        "feature_importance": [{"feature": f, "gain": 100.0 / (i + 1)} for i, f in enumerate(FEATURES)],
        "prediction_drift": {"available": True, "severity": "MODERATE", "psi_max": 0.13, "features": [
            {"name": f"prob_{c}", "psi": 0.13, "severity": "MODERATE"} for c in CLASSES]},
    }


# Measures after layout: each SVG text's box against its SVG's box, each importance label against its bar, the
# page's width against the window's, the tables that would need scrolling; writes them as JSON into
# <pre id="geometry">.
MEASURE = """<script>
const out = {window: window.innerWidth, page: document.documentElement.scrollWidth, texts: [], bars: []};
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect();
  const scale = box.width / svg.viewBox.baseVal.width;
  for (const t of svg.querySelectorAll('text')) {
    const r = t.getBoundingClientRect();
    out.texts.push({svg: svg.getAttribute('aria-label'),
                    text: [...t.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join(''),
                    scale: scale,
                    left: r.left - box.left, right: box.right - r.right, top: r.top - box.top,
                    bottom: box.bottom - r.bottom});
  }
  if (svg.getAttribute('aria-label') === 'feature importance') {
    for (const g of svg.querySelectorAll('g')) {
      const label = g.querySelector('text.label').getBoundingClientRect();
      out.bars.push({gap: g.querySelector('rect').getBoundingClientRect().left - label.right});
    }
  }
}
out.scrolled = [...document.querySelectorAll('.wide')].filter(d => d.scrollWidth > d.clientWidth)
  .map(d => d.textContent.slice(0, 80));
const pre = document.createElement('pre'); pre.id = 'geometry'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def _measure(html: str, width: int, tmp_path) -> dict:
    return _dump(html.replace("</body>", MEASURE + "</body>"), width, tmp_path)


def _dump(html: str, width: int, tmp_path):
    """The JSON a page's script wrote into <pre id="geometry">, read from Chromium's DOM after layout."""
    page = tmp_path / f"page-{width}.html"
    page.write_text(html)
    dom = dump_dom(page, tmp_path / "profile", width=width)
    found = re.search(r'<pre id="geometry">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(unescape(found.group(1)))


def test_long_names_are_shortened_in_the_middle_with_the_full_name_as_tooltip():
    html = render(_report())
    assert "<script" not in html and not re.search(r"(src|href)=|url\(|(?<!xmlns=\")https?://", html)  # self-contained
    long = FEATURES[0]
    shown = shorten(long)
    assert len(shown) == LABEL_CHARS and shown.startswith("num_avg_consumption_last") and shown.endswith(
        "_residential_subsidized") and "…" in shown
    assert f"<title>{long}</title>{shown}</text>" in html
    assert shorten(FEATURES[2]) == FEATURES[2]  # 48 characters: shown whole
    assert "sin_estrato_declarado</title>sin_e" in html  # a group name too wide for its bar: cut, whole in tooltip


@needs_chromium
def test_the_width_estimate_bounds_every_character_as_chromium_renders_it(tmp_path):
    """`text_width` sizes every label column: it must never be below the rendered width, for any character a
    feature or class name may hold, in the report's own font (its CSS)."""
    characters = string.ascii_letters + string.digits + string.punctuation + " "
    runs = [c * 20 for c in characters]
    texts = "".join(f'<text x="0" y="20" font-size="11">{escape(run)}</text>' for run in runs)
    html = (f"<!DOCTYPE html><html><head><style>{CSS}</style></head><body>"
            f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="40" viewBox="0 0 900 40">{texts}</svg>'
            "</body></html>")
    script = """<script>
const widths = [...document.querySelectorAll('text')].map(t => t.getComputedTextLength());
const pre = document.createElement('pre'); pre.id = 'geometry'; pre.textContent = JSON.stringify(widths);
document.body.appendChild(pre);
</script>"""
    widths = _dump(html.replace("</body>", script + "</body>"), 1280, tmp_path)
    assert len(widths) == len(runs)
    under = {run[0]: (w, text_width(run, 11)) for run, w in zip(runs, widths) if w > text_width(run, 11)}
    assert under == {}, under  # (rendered, estimated) for every character the estimate is below


@needs_chromium
@pytest.mark.parametrize("width", [1280, 700])
def test_nothing_is_cut_off_in_headless_chromium(width, tmp_path):
    geometry = _measure(render(_report()), width, tmp_path)
    assert geometry["page"] <= geometry["window"], geometry  # nothing wider than the window (cut at its edge)
    assert geometry["scrolled"] == []  # no table hides columns behind a scroll bar
    texts = geometry["texts"]
    labels = {t["text"] for t in texts}
    for name in (shorten(FEATURES[0]), shorten(FEATURES[1]), FEATURES[2], "consumo_industrial_estacional_alto"):
        assert name in labels  # measured: the long ones are in the plots
    clipped = [t for t in texts if min(t["left"], t["right"], t["top"], t["bottom"]) < -0.5]
    assert clipped == [], clipped  # every text inside its SVG, so none clipped
    assert len(geometry["bars"]) == len(FEATURES) and min(b["gap"] for b in geometry["bars"]) >= 2
    assert min(t["scale"] for t in texts) >= 0.8  # shrunk to fit a narrow window, still readable
