"""CUSUM across batches: the alarm for a slow creep that no single batch shows (`python -m kon_ray.drift.history`).

A batch is one tracked run (a standalone drift check or a pipeline run); a series is one metric over the batches:
each feature's PSI (`psi/<feature>`), the drifted share (`drift/drifted_share`) and, where InferenceReporting logged
it, each population's estimated accuracy (`performance/<population>/estimated_accuracy`).

The rule, Page's two-sided tabular CUSUM on standardized values (`CusumConfig`):
- baseline: the series' first `warmup` values (batches without a value are skipped): their mean m and sample
  standard deviation s (ddof=1). A baseline with fewer values, or with s = 0 (a series that never moved, e.g. the
  same data checked again), has no CUSUM: the series says why.
- every later value x_i: z_i = (x_i - m) / s; S+_i = max(0, S+_{i-1} + z_i - k), S-_i = max(0, S-_{i-1} - z_i - k),
  from S = 0 at the end of the baseline. k (`slack`, 0.5 sd) is half the shift the rule is tuned to catch fastest
  (1 sd); h (`decision`, 5 sd) the alarm level: with k = 0.5 and h = 5 an in-control normal series alarms about
  once in 465 batches, and a 1 sd shift is caught in about 10.
- a batch alarms when S+ or S- exceeds h; the sums are not reset after an alarm, so every batch of a lasting creep
  stays marked. `alarm_at` is the first.
- beside it, the single-batch rule on the same baseline: |z_i| > 3 (the band m +/- 3 s, as the chunk alarms of
  the performance estimate). A creep of small steps crosses h long before any one step leaves the band.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from kon_ray.errors import ConfigError

BAND_SDS = 3.0  # the single-batch rule: |z| > 3
DRIFTED_SHARE = "drift/drifted_share"
_ESTIMATED = re.compile(r"^performance/[^/]+/estimated_accuracy$")  # InferenceReporting's, per population
RULE = ("two-sided tabular CUSUM on values standardized by the first `warmup` values' mean and sd: S+ = max(0, S+ +"
        " z - k), S- = max(0, S- - z - k); a batch alarms when either exceeds h. Single-batch band: |z| > 3")


@dataclass(frozen=True)
class CusumConfig:
    warmup: int = 5  # the first values that define the baseline (mean, sd)
    slack: float = 0.5  # k, in baseline sds
    decision: float = 5.0  # h, in baseline sds

    def __post_init__(self) -> None:
        if self.warmup < 2:
            raise ConfigError(f"cusum.warmup must be >= 2 (a standard deviation needs two values), got {self.warmup}")
        if self.slack < 0 or self.decision <= 0:
            raise ConfigError(f"cusum.slack must be >= 0 and cusum.decision > 0, got {self.slack}, {self.decision}")


@dataclass(frozen=True)
class Series:
    name: str
    values: List[Optional[float]]  # one per batch, None where the batch has none
    mean: Optional[float] = None  # the baseline's; None without a CUSUM
    sd: Optional[float] = None
    upper: Optional[List[Optional[float]]] = None  # S+ per batch, None in the baseline and where there is no value
    lower: Optional[List[Optional[float]]] = None  # S-
    alarms: Optional[List[int]] = None  # batches where S+ or S- > h
    band_alarms: Optional[List[int]] = None  # batches after the baseline with |z| > 3
    reason: Optional[str] = None  # why there is no CUSUM

    @property
    def alarm_at(self) -> Optional[int]:
        return self.alarms[0] if self.alarms else None


def cusum(name: str, values: Sequence[Optional[float]], cfg: CusumConfig) -> Series:
    """The series' CUSUM (module docstring)."""
    values = list(values)
    seen = [i for i, v in enumerate(values) if v is not None]
    if len(seen) <= cfg.warmup:
        return Series(name, values, reason=f"{len(seen)} values: the baseline needs {cfg.warmup} and then more")
    baseline = np.array([values[i] for i in seen[:cfg.warmup]], dtype=float)
    mean, sd = float(baseline.mean()), float(baseline.std(ddof=1))
    if not sd > 1e-9 * max(1.0, abs(mean)):  # equal values leave a rounding residue, not a scale
        return Series(name, values, reason=f"the first {cfg.warmup} values do not vary: no scale to standardize by")
    upper: List[Optional[float]] = [None] * len(values)
    lower: List[Optional[float]] = [None] * len(values)
    alarms, band = [], []
    high = low = 0.0
    for i in seen[cfg.warmup:]:
        z = (float(values[i]) - mean) / sd  # type: ignore[arg-type]
        high, low = max(0.0, high + z - cfg.slack), max(0.0, low - z - cfg.slack)
        upper[i], lower[i] = high, low
        if high > cfg.decision or low > cfg.decision:
            alarms.append(i)
        if abs(z) > BAND_SDS:
            band.append(i)
    return Series(name, values, mean, sd, upper, lower, alarms, band)


def tracked(metrics: Mapping[str, float]) -> Dict[str, float]:
    """The series a run's metrics hold besides PSI: the drifted share and the estimated accuracies."""
    return {k: v for k, v in metrics.items() if k == DRIFTED_SHARE or _ESTIMATED.match(k)}


def all_series(psi: Sequence[Mapping[str, float]], other: Sequence[Mapping[str, float]],
               cfg: CusumConfig) -> List[Series]:
    """Every series over the batches (per batch: its PSI by feature, its `tracked` metrics): the drifted share and
    the estimated accuracies first, then PSI by feature (`psi/<feature>`); each by name."""
    names = sorted({k for batch in other for k in batch})
    out = [cusum(name, [batch.get(name) for batch in other], cfg) for name in names]
    features = sorted({k for batch in psi for k in batch})
    return out + [cusum(f"psi/{name}", [batch.get(name) for batch in psi], cfg) for name in features]


def as_json(series: Sequence[Series], cfg: CusumConfig) -> Dict[str, Any]:
    return {"rule": RULE, "warmup": cfg.warmup, "slack": cfg.slack, "decision": cfg.decision, "band_sds": BAND_SDS,
            "series": [{"name": s.name, "values": s.values, "mean": s.mean, "sd": s.sd, "upper": s.upper,
                        "lower": s.lower, "alarms": s.alarms, "alarm_at": s.alarm_at, "band_alarms": s.band_alarms,
                        "reason": s.reason} for s in series]}


def chart_svg(s: Series, cfg: CusumConfig) -> str:
    """The series by batch with its baseline band (m +/- 3 s, dashed) and, in red, the batches the CUSUM alarms."""
    assert s.mean is not None and s.sd is not None and s.alarms is not None
    width, height, left, right, top, bottom = 520, 170, 52, 12, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(i, float(v)) for i, v in enumerate(s.values) if v is not None]
    lo_band, hi_band = s.mean - BAND_SDS * s.sd, s.mean + BAND_SDS * s.sd
    lo = min([lo_band] + [v for _, v in points])
    hi = max([hi_band] + [v for _, v in points])
    n = len(s.values)

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg class="cusum" width="{width}" height="{height}" role="img"'
             f' aria-label="{escape(s.name)} by batch, CUSUM alarms in red">']
    for level in (lo_band, hi_band):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(level):.1f}" y2="{y(level):.1f}"'
                     f' stroke="#999" stroke-dasharray="4 3"/><text x="{left - 4}" y="{y(level) + 4:.1f}"'
                     f' font-size="10" text-anchor="end" fill="#666">{level:.3g}</text>')
    if len(points) > 1:
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#555" stroke-width="1.5"/>')
    for i, v in points:
        alarm = i in s.alarms
        parts.append(f'<circle class="{"alarm" if alarm else "point"}" data-batch="{i}" cx="{x(i):.1f}"'
                     f' cy="{y(v):.1f}" r="4" fill="{"#c62828" if alarm else "#4a6fa5"}"><title>batch {i + 1}:'
                     f' {v:.4g}{" (CUSUM alarm)" if alarm else ""}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def section(series: Sequence[Series], cfg: CusumConfig) -> str:
    """The history page's CUSUM section: a table of every series with its first alarm, then the drifted share's
    and the estimated accuracies' charts and those of the PSI series that alarm."""
    def cell(s: Series) -> str:
        if s.reason:
            return f'<td class="l" colspan="3">no CUSUM: {escape(s.reason)}</td>'
        first = "-" if s.alarm_at is None else str(s.alarm_at + 1)
        bands = ", ".join(str(i + 1) for i in s.band_alarms or []) or "-"
        return f'<td class="num">{s.mean:.4g} &plusmn; {s.sd:.3g}</td><td>{first}</td><td class="l">{bands}</td>'

    alarmed = [s for s in series if s.alarm_at is not None]
    rows = "".join(f'<tr{" class=crossed" if s.alarm_at is not None else ""}><td class="l">{escape(s.name)}</td>'
                   f"{cell(s)}</tr>" for s in sorted(series, key=lambda s: (s.alarm_at is None, s.name)))
    drawn = [s for s in series if s.reason is None and (not s.name.startswith("psi/") or s.alarm_at is not None)]
    figures = "".join(f'<figure><figcaption><b>{escape(s.name)}</b>'
                      f'{" CUSUM alarm from batch " + str(s.alarm_at + 1) if s.alarm_at is not None else ""}'
                      f'</figcaption>{chart_svg(s, cfg)}</figure>' for s in drawn)
    return f"""<h2>CUSUM across batches</h2>
<div class="meta">{len(alarmed)} of {len(series)} series alarm. Baseline: each series' first {cfg.warmup} values;
z = (value - mean) / sd; S+ = max(0, S+ + z - {cfg.slack:g}), S- = max(0, S- - z - {cfg.slack:g}); a batch alarms when
either exceeds {cfg.decision:g} (a slow creep). The single-batch band is mean &plusmn; 3 sd (dashed).</div>
<table id="cusum-table"><thead><tr><th class="l">series</th><th>baseline mean &plusmn; sd</th>
<th>first CUSUM alarm (batch)</th><th class="l">batches outside the band</th></tr></thead><tbody>{rows}</tbody></table>
<div class="charts" id="cusum-charts">{figures}</div>
"""


__all__ = ["CusumConfig", "Series", "cusum", "tracked", "all_series", "as_json", "section", "chart_svg", "RULE"]
