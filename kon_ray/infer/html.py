"""A population report as one self-contained HTML page: inline CSS and inline SVG plots (confusion-matrix heatmap,
feature-importance bars, accuracy by estrato and by cluster beside the majority-class baseline), no scripts and
nothing fetched from outside."""

from __future__ import annotations

from html import escape
from typing import Any, List, Mapping, Sequence, Tuple

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2933;max-width:1100px}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d9e2ec}
.sub{color:#52606d;margin-top:0} table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{padding:.3rem .6rem;border-bottom:1px solid #e4e7eb;text-align:right} th:first-child,td:first-child{text-align:left}
th{background:#f5f7fa} .good{color:#0b7a3e;font-weight:600} .warn{color:#b44d12;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:2rem} figure{margin:0} figcaption{font-size:.85rem;color:#52606d}
"""


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _num(value: Any, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def heatmap_svg(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> str:
    """Confusion matrix: rows = actual, columns = predicted; colour = share of the actual class (row)."""
    k, cell, left, top = len(labels), 54, 120, 40
    width, height = left + k * cell + 10, top + k * cell + 90
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            shade = int(245 - 190 * share)
            fill = f"rgb({shade},{shade + 5 if shade < 250 else 250},{min(255, shade + 40)})"
            x, y = left + j * cell, top + i * cell
            text_colour = "#fff" if share > 0.55 else "#1f2933"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}"/>'
                         f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 4}" font-size="11" text-anchor="middle" '
                         f'fill="{text_colour}">{count}</text>')
        parts.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4}" font-size="11" '
                     f'text-anchor="end">{escape(labels[i])}</text>')
    for j, label in enumerate(labels):
        x = left + j * cell + cell / 2
        parts.append(f'<text x="{x}" y="{top + k * cell + 12}" font-size="11" text-anchor="end" '
                     f'transform="rotate(-40 {x} {top + k * cell + 12})">{escape(label)}</text>')
    parts.append(f'<text x="{left}" y="{top - 22}" font-size="11" fill="#52606d">predicted →</text>'
                 f'<text x="4" y="{top - 8}" font-size="11" fill="#52606d">actual ↓</text></svg>')
    return "".join(parts)


def hbars_svg(items: Sequence[Tuple[str, float]], title: str, value_format: str = ".3g") -> str:
    """Horizontal bars, longest first as given."""
    if not items:
        return "<p>none</p>"
    bar_h, left, width = 18, 180, 300
    top = max(v for _, v in items) or 1.0
    height = len(items) * (bar_h + 4) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, (name, value) in enumerate(items):
        y = 5 + i * (bar_h + 4)
        w = max(1.0, width * value / top)
        parts.append(f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(name)}</text>'
                     f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3e7cb1"/>'
                     f'<text x="{left + w + 4}" y="{y + 13}" font-size="11">{format(value, value_format)}</text>')
    return "".join(parts) + "</svg>"


def group_bars_svg(groups: Mapping[str, Mapping[str, Any]], title: str) -> str:
    """Accuracy per group (bars) with the majority-class baseline of that group (a dark tick)."""
    if not groups:
        return "<p>none</p>"
    names = list(groups)
    bar_w, gap, left, plot_h, top = 34, 14, 40, 160, 10
    width = left + len(names) * (bar_w + gap) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{plot_h + 60}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#9aa5b1"/>']
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
                     f'<text x="{x + bar_w / 2}" y="{top + plot_h + 14}" font-size="11" text-anchor="middle">'
                     f'{escape(name)}</text>'
                     f'<text x="{x + bar_w / 2}" y="{top + plot_h + 28}" font-size="9" fill="#52606d" '
                     f'text-anchor="middle">{g["rows"]}</text>')
    return "".join(parts) + "</svg>"


def _table(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
        return f"<h2>Prediction drift</h2><p>prediction drift: not available ({escape(str(drift.get('reason', '')))})</p>"
    rows = [[escape(str(f.get("feature", f.get("name", "")))), _num(f.get("psi")), escape(str(f.get("severity", "")))]
            for f in drift.get("features", [])]
    return (f"<h2>Prediction drift (test → current)</h2><p>worst severity: <b>{escape(str(drift.get('severity')))}</b>, "
            f"max PSI {_num(drift.get('psi_max'))}</p>{_table(['probability', 'PSI', 'severity'], rows)}")


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
    title = f"{report['dataset']} {report['population']} report"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
