"""`drift_report.html`: one self-contained page (inline CSS and SVG, no script, nothing fetched)."""

from __future__ import annotations

from html import escape
from typing import Any, Dict, Sequence

from kon_ray.drift import statistics
from kon_ray.drift.report import _order, _p, attribution_sentences, bin_labels, explained, headline, prediction_line
from kon_ray.drift.severity import DRIFTED
from kon_ray.drift.statistics import TEST

COLOURS = {"HIGH": "#c62828", "MODERATE": "#ef6c00", "LOW": "#9e9d24", "NONE": "#2e7d32"}
REF, CUR = "#4a6fa5", "#e3872d"
MAX_BARS = 16
CHAR_PX = 5.6  # the width of one character at font-size 10 (system sans-serif, digits and punctuation)
SLANT = 0.7072  # sin 45 degrees: the labels' slant

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;font-size:13px;line-height:1.6}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.raised{background:#fde7e7;color:#8e1b1b}.ok{background:#e6f4ea;color:#1e5c2f}
.cards{display:flex;gap:10px;margin:10px 0}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{font-size:20px;display:block}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right}th{background:#f5f5f5;position:sticky;top:0}
td.l,th.l{text-align:left}.badge{color:#fff;border-radius:4px;padding:1px 6px;font-size:11px;font-weight:600}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(540px,100%),1fr));gap:14px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}figcaption{font-size:13px;margin-bottom:4px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""


def _badge(severity: str) -> str:
    return f'<span class="badge" style="background:{COLOURS[severity]}">{severity}</span>'


def _num(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def bars_svg(labels: Sequence[str], ref: Sequence[int], cur: Sequence[int], title: str) -> str:
    """Grouped bars of reference and current proportions, as inline SVG. Labels are never cut: they are written
    whole, slanted, and the margins below and to the left grow to hold the longest one (a fixed margin clipped
    "(1.1e+03, 1.12e..."); the SVG scales down with a narrow window (viewBox)."""
    ref_total, cur_total = max(sum(ref), 1), max(sum(cur), 1)
    keep = list(range(len(labels)))[:MAX_BARS]
    pr = [ref[i] / ref_total for i in keep]
    pc = [cur[i] / cur_total for i in keep]
    labels = [labels[i] for i in keep]
    longest = max([len(label) for label in labels] + [1]) * CHAR_PX  # the slanted label's length in pixels
    reach = longest * SLANT  # its horizontal and vertical extent at 45 degrees
    left = max(56, int(reach - 10))
    width = max(520, left + 24 * len(labels) + 10)
    bottom, top = int(reach + 20), 10
    height = 180 + bottom
    plot_h = height - bottom - top
    top_value = max(pr + pc + [1e-9])
    group = (width - left - 10) / max(len(labels), 1)
    bar = min(18.0, group * 0.38)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
             f' style="max-width:100%;height:auto" aria-label="{escape(title)}">']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#666">'
                     f'{top_value * frac:.0%}</text>')
    for i, label in enumerate(labels):
        x = left + i * group + group / 2
        for value, colour, dx in ((pr[i], REF, -bar), (pc[i], CUR, 0.0)):
            h = plot_h * value / top_value
            parts.append(f'<rect class="bar" x="{x + dx:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}"'
                         f' height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {value:.2%}</title></rect>')
        y = height - bottom + 12
        parts.append(f'<text class="label" x="{x:.1f}" y="{y}" font-size="10" fill="#444" text-anchor="end"'
                     f' transform="rotate(-45 {x:.1f} {y})">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _plot(feature: Dict[str, Any]) -> str:
    if feature["type"] == "numeric":
        labels = feature["bins"].get("labels") or bin_labels(feature["bins"]["edges"])
        ref, cur = feature["bins"]["reference"], feature["bins"]["current"]
        # the -inf and +inf bins (before the missing bin) are shown only when a side has such values
        keep = [i for i in range(len(labels)) if i < len(labels) - 3 or i == len(labels) - 1 or ref[i] or cur[i]]
        labels, ref, cur = [labels[i] for i in keep], [ref[i] for i in keep], [cur[i] for i in keep]
    else:
        cats = feature["categories"]
        labels = ["missing" if c is None else str(c) for c in cats["labels"]]
        ref, cur = cats["reference"], cats["current"]
    title = f"{feature['name']}: reference vs current"
    return (f'<figure><figcaption><b>{escape(feature["name"])}</b> {_badge(feature["severity"])}'
            f' PSI {feature["psi"]:.4f}, {feature["test"].upper()} {_num(feature["statistic"], ".4g")}'
            f'</figcaption>{bars_svg(labels, ref, cur, title)}</figure>')


def _skipped(items: Sequence[Dict[str, str]]) -> str:
    if not items:
        return ""
    rows = "".join(f"<li><b>{escape(i['name'])}</b>: {escape(i['reason'])}</li>" for i in items)
    return f'<h2>Not analysed</h2><ul class="meta" id="skipped">{rows}</ul>'


MIX, WITHIN = "#8c6bb1", "#41ab5d"  # the attribution chart: segment mix, change within segments


def attribution_svg(features: Sequence[Dict[str, Any]]) -> str:
    """One bar per (feature, segment column): its PSI's length split into the segment-mix share and the
    within-segment share (they add up to the PSI; a negative share, possible for Shapley shares, is drawn as 0
    and still printed), all on one scale, so the page says at a glance which drifts are a change of mix."""
    rows = [(f, a) for f in features for a in f.get("attribution", ()) if "mix_share" in a]
    if not rows:
        return ""
    label_w, bar_w, row_h = 260, 420, 22
    scale = bar_w / max(max(f["psi"] for f, _ in rows), 1e-12)
    height = row_h * len(rows) + 8
    parts = [f'<svg id="attribution-chart" viewBox="0 0 {label_w + bar_w + 150} {height}" width="100%"'
             f' role="img" aria-label="each drifted feature\'s PSI split into segment mix and within-segment change">']
    for i, (f, a) in enumerate(rows):
        y = 4 + i * row_h
        mix, within = max(a["mix_share"], 0.0) * scale, max(a["within_share"], 0.0) * scale
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" font-size="12">'
                     f'{escape(f["name"])} by {escape(a["by"])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{mix:.1f}" height="{row_h - 6}" fill="{MIX}">'
                     f'<title>segment mix {a["mix_share"]:.4f}</title></rect>')
        parts.append(f'<rect x="{label_w + mix:.1f}" y="{y + 2}" width="{within:.1f}" height="{row_h - 6}"'
                     f' fill="{WITHIN}"><title>within segments {a["within_share"]:.4f}</title></rect>')
        share = a["mix_share"] / f["psi"] if f["psi"] > 0 else 0.0
        parts.append(f'<text x="{label_w + mix + within + 6:.1f}" y="{y + 14}" font-size="12">'
                     f'PSI {f["psi"]:.3f}: {share:.0%} mix</text>')
    parts.append("</svg>")
    return "".join(parts)


def _why(report: Dict[str, Any]) -> str:
    shown = explained(report)
    sentences = [s for f in shown for s in attribution_sentences(f)]
    if not sentences:
        return ""
    legend = (f'<div class="legend"><span style="background:{MIX}"></span>segment mix'
              f'<span style="background:{WITHIN}"></span>change within segments</div>')
    items = "".join(f"<li>{escape(s)}</li>" for s in sentences)
    return (f'<h2>Why: segment mix or change within segments</h2>{legend}{attribution_svg(shown)}'
            f'<ul class="meta" id="attribution">{items}</ul>')


def render(report: Dict[str, Any], plots: int = 8) -> str:
    s = report["summary"]
    features = sorted(report["features"], key=_order)
    cards = "".join(f'<div class="card">{_badge(k)}<b>{s["severity_counts"][k]}</b></div>'
                    for k in ("HIGH", "MODERATE", "LOW", "NONE"))
    rows = []
    for f in features:
        rows.append(
            f'<tr><td class="l">{escape(f["name"])}</td><td class="l">{f["type"]}</td><td>{f["psi"]:.4f}</td>'
            f'<td class="l">{f["test"]}</td><td>{_num(f["statistic"], ".4g")}</td><td>{_p(f["p_value"])}</td>'
            f'<td>{_p(f["p_value_adjusted"])}</td><td>{_num(f["effect_size"], ".4f")}</td>'
            f'<td class="l">{_badge(f["severity"])}</td></tr>'
        )
    shown = [f for f in features if f["severity"] in DRIFTED][:plots] or features[: min(plots, 2)]
    figures = "".join(_plot(f) for f in shown)
    legend = (f'<div class="legend"><span style="background:{REF}"></span>reference'
              f'<span style="background:{CUR}"></span>current</div>')
    notes = "".join(f"<br>\n{line}" for statistic in statistics.STATISTICS for line in statistic.html(s))
    effect_sizes = ", ".join(f"{escape(t.effect_size_title, quote=False)} for {' and '.join(sorted(t.kinds))} features"
                             for t in statistics.STATISTICS if t.role == TEST)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kon_ray drift report</title><style>{CSS}</style></head>
<body>
<h1>Drift report</h1>
<div class="meta">reference: {escape(report['reference'])} ({report['rows']['reference']:,} rows)<br>
current: {escape(report['current'])} ({report['rows']['current']:,} rows)<br>
{escape(prediction_line(s['prediction_drift']))}{notes}</div>
<div class="banner {'raised' if s['drift_flag'] else 'ok'}">{escape(headline(report))}</div>
<div class="cards">{cards}</div>
{_why(report)}
<h2>Distributions of the most drifted features</h2>{legend}
<div class="plots" id="plots">{figures}</div>
<h2>All features</h2>
<table id="severity-table"><thead><tr><th class="l">feature</th><th class="l">type</th><th>PSI</th>
<th class="l">test</th><th>statistic</th><th>p-value</th><th>p (BH)</th><th>effect size</th>
<th class="l">severity</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
{_skipped(report.get("skipped", []))}
<p class="meta">Effect size: {effect_sizes}.
Severity: PSI &gt; {s['thresholds']['psi_high']} HIGH; {s['thresholds']['psi_moderate']} &le; PSI &le;
{s['thresholds']['psi_high']} MODERATE if p &lt; {s['thresholds']['p_value']}, else LOW; below, NONE.</p>
</body></html>
"""
