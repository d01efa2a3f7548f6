"""`python -m kon_ray.drift.history tracking.uri=URI experiment=NAME output=DIR`: drift over time, from MLflow.

Reads the tracked drift checks of one experiment (`python -m kon_ray.drift ... tracking.uri=URI`, or pipeline runs:
any run with `psi/<feature>` metrics) with the MLflow client, oldest first, and writes
`drift_history.html` (one self-contained page: inline CSS and SVG, no script, nothing fetched, styled like
drift_report.html) and `drift_history.json` (the same numbers) under `output`.

Per feature the page draws PSI by batch over the PSI bands of `drift.*` (conf/drift/, the checks' DriftConfig),
graded as the severity rule grades them (kon_ray/drift/severity.band): below `psi_moderate` NONE, from
`psi_moderate` to `psi_high` MODERATE (MODERATE or LOW by the test's p-value in a check's report; the history has
PSI only), above `psi_high` HIGH. A feature *crosses* a band when its band differs
from its band in its previous batch; features are listed by their most recent crossing first (then by their latest
band and PSI), so what changed last is on top. Each series (PSI per feature, the drifted share, the estimated
accuracy where InferenceReporting logged it) also gets a CUSUM alarm across batches, drawn with its baseline band
(kon_ray/drift/cusum.py: the rule), so that a slow creep no single batch shows is caught. Exit codes as
`python -m kon_ray.run` (kon_ray/errors.py): the server not answering or an unknown experiment is a config error
(2), an experiment without drift checks a data error (3).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from html import escape
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from kon_ray import storage
from kon_ray.cli import EXIT_CODES, guarded, hydra_cli, started_work
from kon_ray.config import DatasetConfig, load_schema, register_configs
from kon_ray.drift import cusum
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.html import COLOURS, CSS
from kon_ray.drift.severity import band
from kon_ray.drift.statistics import band_statistic
from kon_ray.errors import ConfigError, DataError
from kon_ray.secrets import redact_text
from kon_ray.storage import check_writable
from kon_ray.terminal import result_stream
from kon_ray.tracking.common import import_mlflow
from kon_ray.tracking.uri import check_uri, resolve_uri

log = logging.getLogger("kon_ray.drift.history")  # the module's name, also when it runs as __main__ (python -m)

HTML_FILE = "drift_history.html"
JSON_FILE = "drift_history.json"
PSI_PREFIX = "psi/"
BANDS = ("NONE", "MODERATE", "HIGH")


# -- config ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryTracking:
    uri: str = MISSING  # the MLflow server (or sqlite:///FILE, arn:aws:sagemaker:...) the checks were logged to


@dataclass(frozen=True)
class DriftHistoryConfig:
    drift: DriftConfig = MISSING  # the bands' thresholds (psi_moderate, psi_high)
    tracking: HistoryTracking = field(default_factory=HistoryTracking)
    experiment: str = MISSING  # the checks' experiment (drift-<fingerprint> unless the checks named one)
    output: str = MISSING  # folder for drift_history.html and drift_history.json (local or s3://)
    # +dataset=NAME, as for every command: pipeline runs of that dataset only; None: the latest run's (for_dataset)
    dataset: Optional[DatasetConfig] = None
    cusum: cusum.CusumConfig = field(default_factory=cusum.CusumConfig)  # the alarm across batches (drift/cusum.py)

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            raise ConfigError("experiment must not be empty: the MLflow experiment of the drift checks")


# -- the numbers (pure) ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    run_id: str
    name: str
    started: int  # ms since the epoch
    current: str  # the checked data (tag `current`), or "" for a pipeline run
    drift_flag: Optional[bool]
    psi: Dict[str, float]
    dataset: str = ""  # a pipeline run's dataset (tag `dataset`); "" for a standalone check
    series: Dict[str, float] = field(default_factory=dict)  # drifted share, estimated accuracies (cusum.tracked)


@dataclass(frozen=True)
class FeatureHistory:
    name: str
    psi: List[Optional[float]]  # one per batch, None where the batch did not check the feature
    bands: List[Optional[str]]
    last_crossing: Optional[int]  # index of the batch of the latest band change, None if it never changed
    crossed_from: Optional[str] = None  # the band before that change

    @property
    def latest(self) -> tuple[Optional[float], Optional[str]]:
        for value, band_ in zip(reversed(self.psi), reversed(self.bands)):
            if value is not None:
                return value, band_
        return None, None


def feature_histories(batches: Sequence[Batch], cfg: DriftConfig) -> List[FeatureHistory]:
    """Every feature's PSI and band per batch, most recent band crossing first."""
    names = sorted({name for batch in batches for name in batch.psi})
    histories = []
    for name in names:
        psi = [batch.psi.get(name) for batch in batches]
        bands = [None if value is None else band(value, cfg) for value in psi]
        last_crossing, crossed_from, previous = None, None, None
        for index, current in enumerate(bands):
            if current is None:  # not checked in this batch: the next band is compared with the last one seen
                continue
            if previous is not None and current != previous:
                last_crossing, crossed_from = index, previous
            previous = current
        histories.append(FeatureHistory(name, psi, bands, last_crossing, crossed_from))
    return sorted(histories, key=_order)


def _order(history: FeatureHistory):
    value, band_ = history.latest
    crossed = history.last_crossing if history.last_crossing is not None else -1
    return (-crossed, -BANDS.index(band_ or "NONE"), -(value or 0.0), history.name)


# -- reading MLflow --------------------------------------------------------------------------------------------
def read_batches(client: Any, experiment: str) -> List[Batch]:
    """The experiment's runs that hold PSI metrics, oldest first."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = sorted(e.name for e in client.search_experiments(max_results=50))
        raise ConfigError(f"experiment {experiment!r} not found (experiments there: {', '.join(known) or 'none'});"
                          " a standalone check names its experiment drift-<fingerprint> in its log")
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"], max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    batches = []
    for run in runs:
        psi = {key[len(PSI_PREFIX):]: value for key, value in run.data.metrics.items() if key.startswith(PSI_PREFIX)}
        if not psi:
            continue
        flag = run.data.tags.get("drift_flag")
        batches.append(Batch(run_id=run.info.run_id, name=run.info.run_name or run.info.run_id,
                             started=int(run.info.start_time or 0), current=run.data.tags.get("current", ""),
                             drift_flag=None if flag is None else flag == "true", psi=psi,
                             dataset=run.data.tags.get("dataset", ""), series=cusum.tracked(run.data.metrics)))
    if not batches:
        raise DataError(f"experiment {experiment!r} has no drift checks (no run with psi/<feature> metrics):"
                        " track checks with python -m kon_ray.drift ... tracking.uri=URI")
    return sorted(batches, key=lambda batch: batch.started)


def for_dataset(batches: Sequence[Batch], dataset: Optional[str], experiment: str) -> tuple[List[Batch], str]:
    """(the batches of one dataset, that dataset or ""): one series never mixes datasets, whose features differ.

    `dataset` given: its runs, a ConfigError listing the datasets there when it has none. Not given: the dataset of
    the latest run that has one, with a line naming the others, when the experiment holds several (the pipeline's
    experiment `kon_ray` holds every dataset's runs); all batches when it holds at most one."""
    datasets = sorted({batch.dataset for batch in batches if batch.dataset})
    if dataset is not None:
        chosen = [batch for batch in batches if batch.dataset == dataset]
        if not chosen:
            raise ConfigError(f"+dataset={dataset}: experiment {experiment!r} has no drift runs of it (datasets there:"
                              f" {', '.join(datasets) or 'none: standalone checks only'})")
        return chosen, dataset
    if len(datasets) <= 1:
        return list(batches), datasets[0] if datasets else ""
    latest = next(batch.dataset for batch in reversed(batches) if batch.dataset)
    others = [name for name in datasets if name != latest]
    log.info("experiment %r holds runs of %d datasets: drawing %s (the latest run's); +dataset=%s draws %s",
             experiment, len(datasets), latest, others[0] if len(others) == 1 else "NAME", ", ".join(others))
    return [batch for batch in batches if batch.dataset == latest], latest


# -- the page --------------------------------------------------------------------------------------------------
def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def chart_svg(history: FeatureHistory, batches: Sequence[Batch], cfg: DriftConfig) -> str:
    """PSI by batch over the three bands, as inline SVG; every point carries its exact PSI (data-psi)."""
    width, height, left, right, top, bottom = 520, 190, 52, 12, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for v in history.psi if v is not None]
    y_max = max([cfg.psi_high * 1.5, cfg.psi_moderate * 2, 1e-9] + [v * 1.1 for v in values])
    n = len(batches)

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, y_max) / y_max)

    parts = [f'<svg class="history" width="{width}" height="{height}" role="img"'
             f' aria-label="{escape(history.name)}: PSI by batch">']
    for name, low, high in (("NONE", 0.0, cfg.psi_moderate), ("MODERATE", cfg.psi_moderate, cfg.psi_high),
                            ("HIGH", cfg.psi_high, y_max)):
        if high > low:
            parts.append(f'<rect class="band band-{name.lower()}" x="{left}" y="{y(high):.1f}" width="{plot_w}"'
                         f' height="{y(low) - y(high):.1f}" fill="{COLOURS[name]}" fill-opacity="0.10"/>')
    for level in (cfg.psi_moderate, cfg.psi_high):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(level):.1f}" y2="{y(level):.1f}"'
                     f' stroke="#bbb" stroke-dasharray="3 3"/><text x="{left - 4}" y="{y(level) + 4:.1f}"'
                     f' font-size="10" text-anchor="end" fill="#666">{level:g}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end" fill="#666">{y_max:.2g}</text>')
    points = [(i, v) for i, v in enumerate(history.psi) if v is not None]
    if len(points) > 1:
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#555" stroke-width="1.5"/>')
    for i, v in points:
        colour = COLOURS[history.bands[i] or "NONE"]
        parts.append(f'<circle class="point" data-batch="{i}" data-psi="{v!r}" cx="{x(i):.1f}" cy="{y(v):.1f}"'
                     f' r="4" fill="{colour}"><title>{escape(batches[i].name)}: PSI {v:.4f}'
                     f' ({history.bands[i]})</title></circle>')
    step = max(1, -(-n // 8))  # at most about 8 labels on the axis
    for i in range(0, n, step):
        parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 14}" font-size="10" fill="#444"'
                     f' text-anchor="middle">{i + 1}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS_EXTRA = """
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
td.num{font-variant-numeric:tabular-nums}.crossed{font-weight:600}
"""


def render(batches: Sequence[Batch], histories: Sequence[FeatureHistory], cfg: DriftConfig, experiment: str,
           source: str, extra: str = "") -> str:
    """The page; `extra`: sections drawn before the batches' table (the CUSUM's)."""
    def badge(name: Optional[str]) -> str:
        if name is None:
            return "-"
        return f'<span class="badge" style="background:{COLOURS[name]}">{name}</span>'

    crossed = [h for h in histories if h.last_crossing is not None]
    latest_bands = [h.latest[1] for h in histories]
    cards = "".join(f'<div class="card">{badge(name)}<b>{latest_bands.count(name)}</b></div>'
                    for name in reversed(BANDS))
    rows = []
    for h in histories:
        value, latest_band = h.latest
        when = "-" if h.last_crossing is None else (
            f"{h.last_crossing + 1}: {escape(batches[h.last_crossing].name)}"
            f" ({badge(h.crossed_from)} &rarr;"
            f" {badge(h.bands[h.last_crossing])})")
        first = next((v for v in h.psi if v is not None), None)
        rows.append(f'<tr{" class=crossed" if h.last_crossing is not None else ""}><td class="l">{escape(h.name)}</td>'
                    f'<td class="num">{"-" if value is None else f"{value:.4f}"}</td>'
                    f'<td class="num">{"-" if first is None else f"{first:.4f}"}</td>'
                    f'<td class="l">{badge(latest_band)}</td><td class="l">{when}</td></tr>')
    batch_rows = "".join(
        f'<tr><td>{i + 1}</td><td class="l">{escape(b.name)}</td><td class="l">{_when(b.started)}</td>'
        f'<td class="l">{escape(b.current or "-")}</td>'
        f'<td class="l">{"-" if b.drift_flag is None else ("raised" if b.drift_flag else "no")}</td>'
        f'<td class="l">{escape(b.run_id)}</td></tr>' for i, b in enumerate(batches))
    figures = "".join(
        f'<figure id="feature-{i}"><figcaption><b>{escape(h.name)}</b> {badge(h.latest[1])}'
        f' latest PSI {h.latest[0]:.4f}</figcaption>{chart_svg(h, batches, cfg)}</figure>'
        for i, h in enumerate(histories))
    first_batch, last_batch = batches[0], batches[-1]
    headline = (f"{len(crossed)} of {len(histories)} features crossed a PSI band over {len(batches)} batches;"
                f" {latest_bands.count('HIGH')} HIGH in the latest batch they were checked in")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kon_ray drift history: {escape(experiment)}</title>
<style>{CSS}{CSS_EXTRA}</style></head>
<body>
<h1>Drift history</h1>
<div class="meta">experiment: {escape(experiment)} at {escape(source)}<br>
{len(batches)} batches, {_when(first_batch.started)} to {_when(last_batch.started)}<br>
PSI bands: NONE below {cfg.psi_moderate:g}; MODERATE from {cfg.psi_moderate:g} to {cfg.psi_high:g} (a check's
report calls it MODERATE or LOW by the test's p-value); HIGH above {cfg.psi_high:g}</div>
<div class="banner {'raised' if latest_bands.count('HIGH') else 'ok'}">{escape(headline)}</div>
<div class="cards">{cards}</div>
<h2>Features, most recent band crossing first</h2>
<table id="history-table"><thead><tr><th class="l">feature</th><th>latest PSI</th><th>first PSI</th>
<th class="l">latest band</th><th class="l">last crossing (batch: from &rarr; to)</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
<h2>PSI by batch</h2>
<div class="charts" id="charts">{figures}</div>
{extra}<h2>Batches</h2>
<table id="batch-table"><thead><tr><th>#</th><th class="l">run</th><th class="l">started</th>
<th class="l">current data</th><th class="l">drift flag</th><th class="l">MLflow run id</th></tr></thead><tbody>
{batch_rows}
</tbody></table>
</body></html>
"""


def as_json(batches: Sequence[Batch], histories: Sequence[FeatureHistory], cfg: DriftConfig,
            experiment: str, dataset: str = "") -> Dict[str, Any]:
    return {
        "kind": "kon_ray.drift.history", "version": 1, "experiment": experiment, "dataset": dataset or None,
        "thresholds": band_statistic().limits(cfg),
        "batches": [{"run_id": b.run_id, "name": b.name, "started": b.started, "current": b.current,
                     "drift_flag": b.drift_flag} for b in batches],
        "features": [{"name": h.name, "psi": h.psi, "bands": h.bands, "last_crossing": h.last_crossing,
                      "crossed_from": h.crossed_from} for h in histories],
    }


# -- the command -----------------------------------------------------------------------------------------------
def build(uri: str, experiment: str, output: str, cfg: DriftConfig, dataset: Optional[str] = None,
          cusum_cfg: Optional[cusum.CusumConfig] = None) -> Dict[str, str]:
    """Read the checks, write the page and its JSON; the paths written."""
    from mlflow.tracking import MlflowClient


    import_mlflow().set_tracking_uri(uri)  # sagemaker-mlflow signs and routes by mlflow.get_tracking_uri()
    batches, drawn = for_dataset(read_batches(MlflowClient(uri), experiment), dataset, experiment)
    histories = feature_histories(batches, cfg)
    cusum_cfg = cusum_cfg or cusum.CusumConfig()
    series = cusum.all_series([b.psi for b in batches], [b.series for b in batches], cusum_cfg)
    paths = {"html": storage.join(output, HTML_FILE), "json": storage.join(output, JSON_FILE)}
    storage.write_json(paths["json"], {**as_json(batches, histories, cfg, experiment, drawn),
                                       "cusum": cusum.as_json(series, cusum_cfg)})
    title = f"{experiment}, dataset {drawn}" if drawn else experiment
    storage.write_text(paths["html"], render(batches, histories, cfg, title, redact_text(uri),
                                             cusum.section(series, cusum_cfg)))
    crossed = sum(h.last_crossing is not None for h in histories)
    log.info("drift history: %d batches, %d features (%d crossed a band) -> %s", len(batches), len(histories),
             crossed, paths["html"])
    return paths


def register() -> None:

    register_configs()
    ConfigStore.instance().store(name="base_drift_history", node=OmegaConf.structured(DriftHistoryConfig))


def load(cfg: DictConfig) -> DriftHistoryConfig:

    config: DriftHistoryConfig = load_schema(cfg, DriftHistoryConfig)
    return config


def main(cfg: DictConfig) -> int:

    return guarded(lambda: _history(cfg))


def _history(cfg: DictConfig) -> int:

    config = load(cfg)
    uri = resolve_uri(config.tracking.uri)
    check_uri(uri, untracked=None)  # "tracking.uri URI: no MLflow server answers (...)" before anything else
    check_writable(config.output, "output")
    started_work()
    paths = build(uri, config.experiment, config.output, config.drift,
                  config.dataset.name if config.dataset is not None else None, config.cusum)
    print(f"drift history: {paths['html']}", file=result_stream())
    return 0


def usage() -> str:
    """`python -m kon_ray.drift.history --help`."""

    return f"""usage: python -m kon_ray.drift.history tracking.uri=URI experiment=NAME output=DIR [+dataset=NAME]

Draws each feature's PSI over the batches of one MLflow experiment: the tracked standalone checks against one
reference (experiment drift-<fingerprint>), or pipeline runs (experiment kon_ray), one dataset at a time.

required:
  tracking.uri=URI              where the checks were logged: http(s)://HOST:PORT, sqlite:///FILE, arn:aws:sagemaker:...
  experiment=NAME               their experiment
  output=DIR                    where drift_history.html and drift_history.json go (local or s3://)

common overrides:
  +dataset=NAME                 the dataset whose runs to draw when the experiment has several (default: the one
                                of the latest run, and a line names the others)
  drift.psi_moderate=0.1 drift.psi_high=0.25   the PSI bands drawn
  cusum.warmup=5 cusum.slack=0.5 cusum.decision=5   the CUSUM across batches (baseline batches, k and h in sds)

where things go: DIR/drift_history.html and .json; outputs/drift_history/<date>_<time>/run.log and .hydra/.
{EXIT_CODES}. Hydra's own options: --hydra-help."""


def _cli():

    return hydra_cli("drift_history", main, register, schema=DriftHistoryConfig, usage=usage)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    _cli()()
