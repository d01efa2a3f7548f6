"""`performance_report.html`: one self-contained page (inline CSS and SVG, no script, nothing fetched): each
metric's estimate per chunk with its band, the realized values where there are labels, the reference's alarm band,
and the tables of chunks and segments."""

from __future__ import annotations

from html import escape
from typing import Any, Dict, List, Optional

from kon_ray.performance.change import sentence
from kon_ray.performance.estimator import METRICS
from kon_ray.performance.report import headline

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.meta{color:#555;font-size:13px}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.raised{background:#fde7e7;color:#8e1b1b}.ok{background:#e6f4ea;color:#1e5c2f}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right}th{background:#f5f5f5}
td.l,th.l{text-align:left}tr.alarm td{background:#fdecea}.warn{color:#8e1b1b;font-weight:600}
figure{margin:0 0 14px;border:1px solid #ddd;border-radius:6px;padding:8px}figcaption{font-size:13px}
"""
NAMES = {"accuracy": "accuracy", "macro_f1": "macro F1"}


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def chart(report: Dict[str, Any], metric: str) -> str:
    """The metric per chunk: the band (shaded), the estimate (line), realized values (dots), the reference's
    alarm band (dashed lines)."""
    chunks = report["chunks"]
    width, height, left, bottom, top = 760, 220, 50, 40, 10
    values: List[float] = []
    for c in chunks:
        values += [c["lower"][metric], c["upper"][metric]]
        if c["realized"] and c["realized"][metric] is not None:
            values.append(c["realized"][metric])
    band = report["alarm_bands"].get(metric)
    if band:
        values += [band["lower"], band["upper"]]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.01, hi + 0.01
    plot_w, plot_h = width - left - 10, height - bottom - top
    step = plot_w / max(len(chunks), 1)

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg class="chart" data-metric="{metric}" viewBox="0 0 {width} {height}" width="100%"'
             f' role="img" aria-label="{NAMES[metric]} per chunk">']
    upper = " ".join(f"{x(i):.1f},{y(c['upper'][metric]):.1f}" for i, c in enumerate(chunks))
    lower = " ".join(f"{x(i):.1f},{y(c['lower'][metric]):.1f}" for i, c in reversed(list(enumerate(chunks))))
    parts.append(f'<polygon points="{upper} {lower}" fill="#4a6fa5" fill-opacity="0.2"/>')
    line = " ".join(f"{x(i):.1f},{y(c['estimated'][metric]):.1f}" for i, c in enumerate(chunks))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#4a6fa5" stroke-width="2"/>')
    if band:
        for edge in ("lower", "upper"):
            parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(band[edge]):.1f}" y2="{y(band[edge]):.1f}"'
                         ' stroke="#c62828" stroke-dasharray="4 3"/>')
    for i, c in enumerate(chunks):
        colour = "#c62828" if c["alarm"] else "#4a6fa5"
        parts.append(f'<circle class="estimate" cx="{x(i):.1f}" cy="{y(c["estimated"][metric]):.1f}" r="3"'
                     f' fill="{colour}"/>')
        if c["realized"] and c["realized"][metric] is not None:
            parts.append(f'<circle class="realized" cx="{x(i):.1f}" cy="{y(c["realized"][metric]):.1f}" r="3"'
                         ' fill="#e3872d"/>')
        if len(chunks) <= 40:
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">'
                         f'{escape(str(c["key"]))[:12]}</text>')
    for v in (lo, hi):
        parts.append(f'<text x="{left - 4}" y="{y(v) + 3:.1f}" font-size="10" text-anchor="end">{v:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rows(entries: List[Dict[str, Any]], label: str) -> str:
    out = []
    for e in entries:
        real = e["realized"] or {}
        cells = "".join(f"<td>{_num(e['estimated'][m])}</td><td>{_num(e['lower'][m])} - {_num(e['upper'][m])}</td>"
                        f"<td>{_num(real.get(m))}</td>" for m in METRICS)
        status = []
        if e.get("alarm"):
            status.append("ALARM " + ", ".join(NAMES[m] for m in e["alarms"]))
        if e["unreliable"]:
            status.append("unreliable")
        klass = ' class="alarm"' if e.get("alarm") else ""
        out.append(f'<tr{klass}><td class="l">{escape(str(e[label]))}</td><td>{e["rows"]}</td>{cells}'
                   f'<td>{e["unseen_share"]:.1%}</td><td class="l warn">{escape("; ".join(status))}</td></tr>')
    return "".join(out)


def table(entries: List[Dict[str, Any]], label: str, title: str, css: str) -> str:
    head = "".join(f"<th>{NAMES[m]}</th><th>band</th><th>realized</th>" for m in METRICS)
    return (f'<table class="{css}"><thead><tr><th class="l">{title}</th><th>rows</th>{head}<th>unseen</th>'
            f'<th class="l">status</th></tr></thead><tbody>{_rows(entries, label)}</tbody></table>')


def tables(report: Dict[str, Any]) -> str:
    """The chunks, the whole window and the segments as tables (this page's and the inference page's section)."""
    out = [table(report["chunks"], "key", "chunk", "chunks"),
           table([{**report["overall"], "key": "overall"}], "key", "window", "overall")]
    if report["segments"]:
        labelled = [{**seg, "label": f"{seg['column']}={seg['value']}"} for seg in report["segments"]]
        out.append(table(labelled, "label", "segment", "segments"))
    out += [change_table(change) for change in report.get("accuracy_change", [])]
    return "".join(out)


def change_table(change: Dict[str, Any]) -> str:
    """One segment column's split of the change in estimated accuracy: its sentence, then a row per segment."""
    def share(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.1%}"

    rows = "".join(f'<tr><td class="l">{escape(str(s["value"]))}</td><td>{share(s["ref_share"])}</td>'
                   f'<td>{share(s["cur_share"])}</td><td>{_num(s["ref_accuracy"])}</td><td>{_num(s["cur_accuracy"])}'
                   f'</td><td>{s["mix"]:+.4f}</td><td>{s["within"]:+.4f}</td></tr>' for s in change["segments"])
    return (f'<p class="change">{escape(sentence(change))}</p><table class="change" data-by="{escape(change["by"])}">'
            f'<thead><tr><th class="l">{escape(change["by"])}</th><th>reference share</th><th>current share</th>'
            '<th>reference accuracy</th><th>current accuracy</th><th>mix term</th><th>within term</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>')


def reasons(report: Dict[str, Any]) -> List[str]:
    """Every distinct reason an estimate of the report is unreliable."""
    return sorted({r for e in [report["overall"], *report["chunks"], *report["segments"]] for r in e["reasons"]})


TRUST = ("CBPE assumes calibrated probabilities, no concept shift (the same inputs mean the same labels as in the"
         " reference) and no rows in regions the reference never saw. A realized value outside the band where labels"
         " exist, or an unreliable mark, says an assumption failed.")


def render(report: Dict[str, Any]) -> str:
    raised = any(c["alarm"] for c in report["chunks"]) or report["unreliable"]
    banner = f'<div class="banner {"raised" if raised else "ok"}">{escape(headline(report))}</div>'
    cal = report["calibration"]
    warn = "".join(f'<p class="warn">{escape(r)}</p>' for r in reasons(report))
    figures = "".join(f"<figure><figcaption>{NAMES[m]}: estimate (line) with its +/-3 SE band, realized (orange),"
                      f" reference alarm band (dashed)</figcaption>{chart(report, m)}</figure>" for m in METRICS)
    classes = "".join(f'<tr><td class="l">{escape(name)}</td><td>{c["reference_rows"]}</td><td>{c["positives"]}</td>'
                      f'<td>{c["ece_before"]:.4f}</td><td>{c["ece_after"]:.4f}</td></tr>'
                      for name, c in cal["classes"].items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Performance without labels</title>
<style>{CSS}</style></head><body>
<h1>Performance without labels</h1>
<div class="meta">{escape(str(report['current']))} against the labelled reference {escape(str(report['reference']))}
 &middot; {report['rows']['current']} current rows, {report['rows']['reference']} reference rows</div>
{banner}{warn}
<h2>Chunks</h2>{figures}
{tables(report)}
<h2>Calibration (reference)</h2>
<p class="meta">{escape(cal['method'])}; {cal['bins']} score bins. Mean expected calibration error
 {cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after.</p>
<table class="calibration"><thead><tr><th class="l">class</th><th>rows</th><th>positives</th><th>ECE before</th>
<th>ECE after</th></tr></thead><tbody>{classes}</tbody></table>
<h2>When to trust it</h2><p class="meta">{TRUST}</p>
</body></html>
"""
