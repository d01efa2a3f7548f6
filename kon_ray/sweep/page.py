"""The sweep page, sweep.html: one self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched).

Per population: every trial's validation mlogloss by boosting round (finished trials solid, pruned ones dashed and
ending in a cross where ASHA stopped them, the best trial thick and highlighted), the score against each swept
parameter, and a table of the trials (status, rounds, score, the rule that stopped a pruned one, a failed one's
error). Every drawn element carries `data-*` attributes naming its trial, so a test can check the page in a browser.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Dict, List, Mapping, Sequence

from kon_ray.infer.html import CSS
from kon_ray.sweep.summary import FAILED, FINISHED, PRUNED, best_trials

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 320, 64, 16, 16, 40
SMALL_W, SMALL_H = 300, 220


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _axis_ticks(lo: float, hi: float, count: int = 5) -> List[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


def _curves(population: str, trials: Sequence[Mapping[str, Any]], best_index: Any) -> str:
    drawn = [t for t in trials if t["curve"]]
    if not drawn:
        return "<p>No trial reported a round.</p>"
    rounds = max(len(t["curve"]) for t in drawn)
    values = [v for t in drawn for v in t["curve"] if math.isfinite(v)]
    lo, hi = min(values), max(values)
    x = _scale(1, max(rounds, 2), PAD_L, W - PAD_R)
    y = _scale(lo, hi, H - PAD_B, PAD_T)
    parts = [f'<svg class="curves" data-population="{population}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
             f'role="img"><title>{escape(population)}: validation mlogloss by boosting round</title>',
             f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#9aa5b1"/>',
             f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#9aa5b1"/>']
    for tick in _axis_ticks(lo, hi):
        parts.append(f'<text x="{PAD_L - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end">{tick:.3g}</text>')
    for tick in sorted({1, max(1, rounds // 2), rounds}):
        parts.append(f'<text x="{x(tick):.1f}" y="{H - PAD_B + 16}" font-size="11" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{(PAD_L + W) / 2:.0f}" y="{H - 6}" font-size="12" text-anchor="middle">boosting round'
                 '</text>')
    ordered = sorted(drawn, key=lambda t: t["index"] == best_index)  # the best one drawn last, on top
    for trial in ordered:
        best = trial["index"] == best_index
        status = trial["status"]
        color = "#d64545" if best else {PRUNED: "#9aa5b1", FAILED: "#b44d12"}.get(status, "#3e7cb1")
        dash = ' stroke-dasharray="5 3"' if status != FINISHED else ""
        width = 3.5 if best else 1.4
        points = " ".join(f"{x(i + 1):.1f},{y(v):.1f}" for i, v in enumerate(trial["curve"]) if math.isfinite(v))
        label = _trial_label(trial)
        parts.append(f'<polyline class="trial {status.lower()}{" best" if best else ""}" data-trial="{trial["index"]}" '
                     f'data-status="{status}" data-rounds="{len(trial["curve"])}" fill="none" stroke="{color}" '
                     f'stroke-width="{width}"{dash} points="{points}"><title>{escape(label)}</title></polyline>')
        if status == PRUNED:
            end_x, end_y = x(len(trial["curve"])), y(trial["curve"][-1])
            parts.append(f'<path class="stop" data-trial="{trial["index"]}" data-round="{len(trial["curve"])}" '
                         f'd="M{end_x - 4:.1f},{end_y - 4:.1f}l8,8m0,-8l-8,8" stroke="#52606d" stroke-width="1.6">'
                         f'<title>{escape(label)}: stopped at round {len(trial["curve"])}</title></path>')
    parts.append("</svg>")
    return "".join(parts)


def _trial_label(trial: Mapping[str, Any]) -> str:
    point = " ".join(f"{k}={v}" for k, v in trial["point"].items())
    return f"trial {trial['index']} ({point}): {trial['status']}"


def _score(trial: Mapping[str, Any]) -> float:
    if trial["status"] == FINISHED:
        return float(trial["best_score"])
    return float(min(trial["curve"])) if trial["curve"] else math.nan


def _by_parameter(population: str, key: str, trials: Sequence[Mapping[str, Any]], best_index: Any) -> str:
    """Score (best validation mlogloss reached) against one swept parameter; categorical values spread evenly."""
    shown = [t for t in trials if key in t["point"] and math.isfinite(_score(t))]
    if not shown:
        return ""
    raw = [t["point"][key] for t in shown]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    if numeric:
        lo_x, hi_x = float(min(raw)), float(max(raw))
        position = {v: float(v) for v in raw}
    else:
        levels = list(dict.fromkeys(str(v) for v in raw))
        position = {v: float(levels.index(str(v))) for v in raw}
        lo_x, hi_x = 0.0, float(max(1, len(levels) - 1))
    scores = [_score(t) for t in shown]
    x = _scale(lo_x, hi_x if hi_x > lo_x else lo_x + 1, 48, SMALL_W - 12)
    y = _scale(min(scores), max(scores), SMALL_H - 36, 12)
    parts = [f'<figure><svg class="by-param" data-population="{population}" data-param="{escape(key)}" '
             f'viewBox="0 0 {SMALL_W} {SMALL_H}" width="{SMALL_W}" height="{SMALL_H}" role="img">'
             f'<title>{escape(population)}: score against {escape(key)}</title>',
             f'<line x1="48" y1="{SMALL_H - 36}" x2="{SMALL_W - 12}" y2="{SMALL_H - 36}" stroke="#9aa5b1"/>',
             f'<text x="{SMALL_W / 2:.0f}" y="{SMALL_H - 8}" font-size="12" text-anchor="middle">{escape(key)}</text>']
    for trial, score in zip(shown, scores):
        best = trial["index"] == best_index
        fill = "#d64545" if best else "#3e7cb1" if trial["status"] == FINISHED else "#ffffff"
        parts.append(f'<circle class="point{" best" if best else ""}" data-trial="{trial["index"]}" '
                     f'cx="{x(position[trial["point"][key]]):.1f}" cy="{y(score):.1f}" r="{6 if best else 4}" '
                     f'fill="{fill}" stroke="#3e7cb1"><title>{escape(_trial_label(trial))}: {score:.5f}</title>'
                     '</circle>')
    parts.append(f'</svg><figcaption>best validation mlogloss reached, by {escape(key)}</figcaption></figure>')
    return "".join(parts)


def _table(trials: Sequence[Mapping[str, Any]], best_index: Any) -> str:
    keys = list(dict.fromkeys(k for t in trials for k in t["point"]))
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = []
    for trial in trials:
        best = trial["index"] == best_index
        score = _score(trial)
        note = trial.get("error") or trial.get("stopped_by") or ("reused" if trial.get("reused") else "")
        cells = "".join(f"<td>{escape(str(trial['point'].get(k, '')))}</td>" for k in keys)
        rows.append(f'<tr class="{trial["status"].lower()}{" best" if best else ""}" data-trial="{trial["index"]}">'
                    f'<td>{trial["index"]}{" ★" if best else ""}</td>{cells}<td>{trial["status"]}</td>'
                    f'<td>{trial["rounds"]}</td><td>{"" if math.isnan(score) else f"{score:.5f}"}</td>'
                    f'<td>{escape(note)}</td></tr>')
    return (f'<div class="wide"><table><tr><th>trial</th>{head}<th>status</th><th>rounds</th>'
            f'<th>validation mlogloss</th><th>note</th></tr>{"".join(rows)}</table></div>')


def render(summary: Mapping[str, Any], title: str) -> str:
    """The whole page for a sweep summary (kon_ray.sweep.summary.summarize)."""
    trials = summary["trials"]
    populations = list(summary["best"])
    best = best_trials(trials, populations)
    sections: List[str] = []
    for population in populations:
        own = [t for t in trials if t["population"] == population]
        best_index = best[population]["index"] if best[population] else None
        chosen: Dict[str, Any] = summary["best"][population] or {}
        heading = (f'<p class="sub">best: trial {best_index}, validation mlogloss '
                   f'{chosen["validation_mlogloss"]:.6f}<br><code>{escape(chosen["command"])}</code></p>'
                   if chosen else '<p class="sub">no finished trial</p>')
        keys = list(dict.fromkeys(k for t in own for k in t["point"]))
        params = "".join(_by_parameter(population, k, own, best_index) for k in keys)
        sections.append(f'<section data-population="{population}"><h2>{escape(population)}</h2>{heading}'
                        f'{_curves(population, own, best_index)}<div class="grid">{params}</div>'
                        f'{_table(own, best_index)}</section>')
    counts = summary["counts"]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{escape(title)}</h1>'
            f'<p class="sub">{len(trials)} trials: {counts[FINISHED]} finished, {counts[PRUNED]} pruned (dashed, '
            f'a cross where stopped), {counts[FAILED]} failed; the best per population in red; '
            f'{summary["rounds"]} boosting rounds trained</p>{"".join(sections)}</body></html>')
