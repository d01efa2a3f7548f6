"""A population report as one self-contained HTML page: inline CSS and inline SVG plots (confusion-matrix heatmap,
feature-importance bars, accuracy by estrato and by cluster beside the majority-class baseline), no scripts and
nothing fetched from outside.

An SVG clips what falls outside it, and SVG text cannot be measured without a browser, so every label column is
sized from a conservative estimate of its text's width (`text_width`: DejaVu Sans, the widest of the usual UI
fonts, plus a margin); a name longer than a plot's label budget is shortened in the middle ("kwh_mean…_log"), the
full name in the element's tooltip. Plots carry a viewBox and shrink with a narrow window rather than being cut
off at its edge (tests/infer/test_html.py checks both in headless Chromium at two window widths).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Mapping, Sequence, Tuple

from kon_ray.performance import html as performance_html
from kon_ray.performance.estimator import METRICS
from kon_ray.performance.report import headline

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2933;max-width:1100px}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d9e2ec}
.sub{color:#52606d;margin-top:0} table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{padding:.3rem .6rem;border-bottom:1px solid #e4e7eb;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f5f7fa} .good{color:#0b7a3e;font-weight:600} .warn{color:#b44d12;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:2rem} figure{margin:0;max-width:100%} figcaption{font-size:.85rem;color:#52606d}
svg{max-width:100%;height:auto} .wide{overflow-x:auto;max-width:100%}
td:first-child{overflow-wrap:anywhere} td+td,th{white-space:nowrap}
td.l,th.l{text-align:left} tr.alarm td{background:#fdecea}
"""

# Advance widths in em of DejaVu Sans (Chromium's sans-serif on most Linux machines, and wider than Segoe UI, San
# Francisco, Roboto or Liberation Sans), as Chromium renders them, rounded up; any other character is at most
# DEFAULT_EM (digits and most lower case 0.64). tests/infer/test_html.py measures every printable ASCII character.
_EM = (dict.fromkeys("'ijlIJ", 0.3) | dict.fromkeys(",./:;\\|f-()[]tr! ", 0.42)
       | dict.fromkeys("ABCDGHNOQRUVXZ&", 0.8) | dict.fromkeys("wM#+<=>^~", 0.88) | dict.fromkeys("mW%@", 1.02))
DEFAULT_EM = 0.66
WIDTH_MARGIN = 1.06
LABEL_CHARS = 48  # importance and confusion-matrix labels longer than this are shortened in the middle


def text_width(text: str, font_size: float) -> float:
    """An upper bound, in px, of `text`'s rendered width at `font_size` px in the report's sans-serif font."""
    return WIDTH_MARGIN * font_size * sum(_EM.get(c, DEFAULT_EM) for c in text)


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    """`text` if at most `limit` characters, else its start and end around an ellipsis (a feature name's end, such
    as `_log` or `_missing`, tells features apart as often as its start does)."""
    if len(text) <= limit:
        return text
    head = limit // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def _label(text: str, shown: str, **attrs: Any) -> str:
    """An SVG <text> showing `shown`, its tooltip the full `text`."""
    attributes = " ".join(f'{k.rstrip("_").replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f"<text {attributes}><title>{escape(text)}</title>{escape(shown)}</text>"


def _svg_open(width: float, height: float, title: str) -> str:
    width, height = math.ceil(width), math.ceil(height)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>')


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _num(value: Any, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def heatmap_svg(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> str:
    """Confusion matrix: rows = actual, columns = predicted; colour = share of the actual class (row). The label
    column fits the longest class name, and the bottom margin the predicted classes' names turned by 40 degrees."""
    k, cell, font = len(labels), 54, 11
    shown = [shorten(str(label)) for label in labels]
    longest = max((text_width(t, font) for t in shown), default=0.0)
    turn = math.radians(40)
    # a turned label ends at its column's centre and reaches left by cos(40) and down by sin(40) of its width
    left = max(120.0, longest + 12, longest * math.cos(turn) - cell / 2 + 8)
    top = 40
    width = left + k * cell + 10
    height = top + k * cell + 12 + longest * math.sin(turn) + font + 8
    parts = [_svg_open(width, height, title)]
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            shade = int(245 - 190 * share)
            fill = f"rgb({shade},{shade + 5 if shade < 250 else 250},{min(255, shade + 40)})"
            x, y = left + j * cell, top + i * cell
            text_colour = "#fff" if share > 0.55 else "#1f2933"
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}">'
                         f'<title>actual {escape(str(labels[i]))}, predicted {escape(str(labels[j]))}: {count}</title>'
                         f'</rect>'
                         f'<text x="{x + cell / 2 - 1:.1f}" y="{y + cell / 2 + 4}" font-size="{font}" '
                         f'text-anchor="middle" fill="{text_colour}">{count}</text>')
        parts.append(_label(str(labels[i]), shown[i], x=f"{left - 6:.1f}", y=top + i * cell + cell / 2 + 4,
                            font_size=font, text_anchor="end", class_="label"))
    for j, label in enumerate(labels):
        x = left + j * cell + cell / 2
        y = top + k * cell + 12
        parts.append(_label(str(label), shown[j], x=f"{x:.1f}", y=y, font_size=font, text_anchor="end",
                            transform=f"rotate(-40 {x:.1f} {y})", class_="label"))
    parts.append(f'<text x="{left:.1f}" y="{top - 22}" font-size="11" fill="#52606d">predicted →</text>'
                 f'<text x="4" y="{top - 8}" font-size="11" fill="#52606d">actual ↓</text></svg>')
    return "".join(parts)


def hbars_svg(items: Sequence[Tuple[str, float]], title: str, value_format: str = ".3g") -> str:
    """Horizontal bars, longest first as given; the label column as wide as the longest (shortened) name."""
    if not items:
        return "<p>none</p>"
    bar_h, font = 18, 11
    shown = [shorten(str(name)) for name, _ in items]
    left = max(60.0, max(text_width(t, font) for t in shown) + 12)
    width = min(300.0, max(160.0, 480 - left))  # long names take room from the bars: the chart fits ~600 px
    top = max(v for _, v in items) or 1.0
    height = len(items) * (bar_h + 4) + 10
    values = [format(value, value_format) for _, value in items]
    right = max(text_width(v, font) for v in values) + 10
    parts = [_svg_open(left + width + right, height, title)]
    for i, ((name, value), label, text) in enumerate(zip(items, shown, values)):
        y = 5 + i * (bar_h + 4)
        w = max(1.0, width * value / top)
        parts.append(f'<g><title>{escape(str(name))}: {text}</title>'
                     + _label(str(name), label, x=f"{left - 6:.1f}", y=y + 13, font_size=font, text_anchor="end",
                              class_="label")
                     + f'<rect x="{left:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3e7cb1"/>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 13}" font-size="{font}">{text}</text></g>')
    return "".join(parts) + "</svg>"


def group_bars_svg(groups: Mapping[str, Mapping[str, Any]], title: str) -> str:
    """Accuracy per group (bars) with the majority-class baseline of that group (a dark tick)."""
    if not groups:
        return "<p>none</p>"
    names = list(groups)
    bar_w, gap, left, plot_h, top = 34, 14, 40, 160, 10
    width = left + len(names) * (bar_w + gap) + 20
    parts = [_svg_open(width, plot_h + 60, title)
             + f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#9aa5b1"/>']
    for tick in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f'<text x="{left - 4}" y="{y + 4}" font-size="10" text-anchor="end">{tick:.0%}</text>')
    for i, name in enumerate(names):
        g = groups[name]
        x = left + gap / 2 + i * (bar_w + gap)
        h = plot_h * g["accuracy"]
        b = top + plot_h * (1 - g["baseline_accuracy"])
        parts.append(f'<rect x="{x}" y="{top + plot_h - h:.1f}" width="{bar_w}" height="{h:.1f}" fill="#3e7cb1">'
                     f'<title>{escape(name)}: accuracy {_pct(g["accuracy"])}, {g["rows"]} rows</title></rect>'
                     f'<line x1="{x - 3}" y1="{b:.1f}" x2="{x + bar_w + 3}" y2="{b:.1f}" stroke="#1f2933" '
                     f'stroke-width="2"/>'
                     + _label(name, _fit(name, bar_w + gap - 2, 11), x=x + bar_w / 2, y=top + plot_h + 14,
                              font_size=11, text_anchor="middle", class_="label")
                     + f'<text x="{x + bar_w / 2}" y="{top + plot_h + 28}" font-size="9" fill="#52606d" '
                     f'text-anchor="middle">{g["rows"]}</text>')
    return "".join(parts) + "</svg>"


def _fit(text: str, room: float, font_size: float) -> str:
    """`text`, or as much of its start as fits `room` px followed by an ellipsis."""
    if text_width(text, font_size) <= room:
        return text
    while text and text_width(text + "…", font_size) > room:
        text = text[:-1]
    return text + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _split_section(name: str, m: Mapping[str, Any]) -> str:
    per_class = _table(
        ["class", "precision", "recall", "F1", "support", "predicted"],
        [[escape(label), _num(c["precision"]), _num(c["recall"]), _num(c["f1"]), str(c["support"]),
          str(c["predicted"])] for label, c in m["per_class"].items()],
    )
    labels, matrix = m["confusion"]["labels"], m["confusion"]["matrix"]
    group_html = []
    for group, by_value in m["by"].items():
        rows = [[escape(v), str(g["rows"]), _pct(g["accuracy"]), _pct(g["baseline_accuracy"]), _num(g["macro_f1"])]
                for v, g in by_value.items()]
        group_html.append(
            f"<figure>{group_bars_svg(by_value, f'accuracy by {group} ({name})')}"
            f"<figcaption>Accuracy by {escape(group)}; the dark tick is the majority-class baseline.</figcaption>"
            f"{_table([group, 'rows', 'accuracy', 'baseline', 'macro F1'], rows)}</figure>"
        )
    return (
        f"<h2>{escape(name)}: per class</h2>{per_class}"
        f"<div class='grid'><figure>{heatmap_svg(labels, matrix, f'confusion matrix ({name})')}"
        f"<figcaption>Confusion matrix, {escape(name)} (row-normalised shading).</figcaption></figure>"
        f"{''.join(group_html)}</div>"
    )


def _drift_section(drift: Mapping[str, Any]) -> str:
    if not drift.get("available"):
        reason = escape(str(drift.get("reason", "")))
        return f"<h2>Prediction drift</h2><p>prediction drift: not available ({reason})</p>"
    rows = [[escape(str(f.get("feature", f.get("name", "")))), _num(f.get("psi")), escape(str(f.get("severity", "")))]
            for f in drift.get("features", [])]
    return ("<h2>Prediction drift (test → current)</h2>"
            f"<p>worst severity: <b>{escape(str(drift.get('severity')))}</b>, "
            f"max PSI {_num(drift.get('psi_max'))}</p>{_table(['probability', 'PSI', 'severity'], rows)}")


def _performance_section(block: Mapping[str, Any]) -> str:
    """The label-free estimate on the current split (kon_ray/infer/estimate.py), drawn as the standalone page
    draws it: per month the estimate with its band and the realized value, then the tables."""
    title = "<h2>Performance without labels (current split, CBPE)</h2>"
    if "unavailable" in block:
        return f"{title}<p>not estimated: {escape(str(block['unavailable']))}</p>"
    report = dict(block)
    cal = report["calibration"]
    warn = "".join(f"<p class='warn'>unreliable: {escape(r)}</p>" for r in performance_html.reasons(report))
    figures = "".join(f"<figure><figcaption>{performance_html.NAMES[m]} per month: estimate and its +/-3 SE band,"
                      f" realized (orange), test-split alarm band (dashed)</figcaption>"
                      f"{performance_html.chart(report, m)}</figure>" for m in METRICS)
    return (f"{title}<p class='sub'>{escape(headline(report))}. Calibrated on the test split: mean expected"
            f" calibration error {cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after.</p>{warn}"
            f"<div class='grid'>{figures}</div><div class='wide'>{performance_html.tables(report)}</div>"
            f"<p class='sub'>{escape(performance_html.TRUST)}</p>")


def render(report: Mapping[str, Any]) -> str:
    splits = report["splits"]
    summary_rows = []
    for name, m in splits.items():
        lift = m["accuracy"] - m["baseline"]["accuracy"]
        cls = "good" if lift > 0.05 else "warn"
        summary_rows.append([escape(name), f"{m['rows']:,}", _pct(m["accuracy"]), _pct(m["baseline"]["accuracy"]),
                             f"<span class='{cls}'>{100 * lift:+.2f} pts</span>", _num(m["macro_f1"]),
                             _num(m["log_loss"])])
    model = report["model"]
    importance = [(f["feature"], f["gain"]) for f in report["feature_importance"]]
    body = [
        f"<h1>{escape(report['dataset'])} · {escape(report['population'])} segmentation model</h1>",
        f"<p class='sub'>{len(model['classes'])} classes · best round {model['best_iteration']} of "
        f"{model['rounds_trained']} · baseline = always predict <b>{escape(model['majority_class'])}</b> "
        "(the training majority class)</p>",
        _table(["split", "rows", "accuracy", "baseline", "lift", "macro F1", "log loss"], summary_rows),
        f"<h2>Feature importance (gain, top {len(importance)})</h2>{hbars_svg(importance, 'feature importance')}",
    ]
    body += [_split_section(name, m) for name, m in splits.items()]
    body.append(_drift_section(report.get("prediction_drift", {})))
    body.append(_performance_section(report.get("performance", {"unavailable": "not estimated"})))
    title = f"{report['dataset']} {report['population']} report"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
