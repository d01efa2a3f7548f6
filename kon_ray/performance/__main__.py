"""`python -m kon_ray.performance reference=PATH current=PATH output=DIR performance.label_column=COL
performance.probability_prefix=PREFIX [...]`: a classifier's accuracy and macro F1 estimated on a window without
its labels (CBPE, kon_ray/performance/estimator.py), from anyone's predictions: Parquet with one probability column
per class (PREFIX<class>). Config: conf/performance_standalone.yaml; exit codes as `python -m kon_ray.run`
(kon_ray/errors.py).

Everything is read and checked before anything is written: a bad input (no label column in the reference,
probabilities that do not sum to 1, a prefix matching nothing, a label with no probability column, an empty
window) is one line and exit 3, and leaves neither the output folder nor a run folder. No Ray: one process reads
the row groups in turn (the reference twice, the current window once).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from kon_ray import storage
from kon_ray.cli import EXIT_CODES, guarded, hydra_cli, started_work
from kon_ray.config import load_schema, register_configs
from kon_ray.errors import ConfigError
from kon_ray.performance.config import PerformanceConfig
from kon_ray.performance.html import render
from kon_ray.performance.report import REPORT_HTML, REPORT_JSON, SUMMARY_TXT, build, headline, summary_text
from kon_ray.terminal import result_stream

log = logging.getLogger("kon_ray.performance")  # the module's name, also when it runs as __main__


@dataclass(frozen=True)
class PerformanceStandaloneConfig:
    performance: PerformanceConfig = MISSING
    reference: str = MISSING  # labelled Parquet file or folder (local or s3://)
    current: str = MISSING  # Parquet file or folder to estimate on
    output: str = MISSING  # folder for the reports (local or s3://)


def register() -> None:
    register_configs()
    ConfigStore.instance().store(name="base_performance_standalone",
                                 node=OmegaConf.structured(PerformanceStandaloneConfig))


def main(cfg: DictConfig) -> int:
    """Validate, estimate, write; the exit code (0, or a KonError's code)."""
    return guarded(lambda: _estimate(cfg))


def check_output(path: str) -> None:
    """A local output folder must be creatable: its nearest existing parent a writable folder. Nothing is created
    here (a bad input must leave no output folder); S3 is checked on write."""
    if storage.is_s3(path):
        return
    target = os.path.abspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise ConfigError(f"output={path} is a file, not a folder; choose another output")
    parent = target
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"output={path} is not writable ({parent}); choose another output")


def write(report: dict, output: str) -> None:
    storage.write_json(storage.join(output, REPORT_JSON), report)
    storage.write_text(storage.join(output, SUMMARY_TXT), summary_text(report))
    storage.write_text(storage.join(output, REPORT_HTML), render(report))


def _estimate(cfg: DictConfig) -> int:
    config: PerformanceStandaloneConfig = load_schema(cfg, PerformanceStandaloneConfig)
    check_output(config.output)
    report = build(config.reference, config.current, config.performance)
    started_work()
    write(report, config.output)
    print(summary_text(report), end="", file=result_stream())
    log.info("performance: %s", headline(report))
    log.info("reports in %s (%s, %s, %s)", config.output, SUMMARY_TXT, REPORT_JSON, REPORT_HTML)
    return 0


def usage() -> str:
    """`python -m kon_ray.performance --help`."""

    return f"""usage: python -m kon_ray.performance reference=PATH current=PATH output=DIR \\
           performance.label_column=COL performance.probability_prefix=PREFIX [KEY=VALUE ...]

Estimates a classifier's accuracy and macro F1 on a window whose labels have not arrived (CBPE): each class's
probability calibrated on the labelled reference (one-vs-rest isotonic), the expected confusion matrix on the
current window, a +/-3 standard error band, alarms against the reference cut into chunks of the same size, and an
unreliable mark where current rows fall in score regions the reference never saw. Any model's predictions: one
probability column per class, PREFIX<class>.

required:
  reference=PATH                        labelled Parquet file or folder of parts (local or s3://)
  current=PATH                          Parquet to estimate on; its labels, where present, are shown beside
  output=DIR                            where the reports go (local or s3://)
  performance.label_column=COL          the true class column (every reference row)
  performance.probability_prefix=PRE    the probability columns PRE<class> (they sum to 1 per row)

common overrides:
  performance.chunk_column=month        one chunk per value, sorted
  performance.chunk_rows=5000           or chunks of N rows in row order (neither: the whole window)
  performance.segment_columns=[estrato] an estimate per value of each column
  performance.unseen_threshold=0.05     above this share of rows in unseen score regions: unreliable
  performance.bins=20                   score bins (calibration and the unseen-region guard)

where things go:
  DIR/                                  performance_summary.txt (also printed), performance_report.json,
                                        performance_report.html
  outputs/performance/<date>_<time>/    run.log and .hydra/

{EXIT_CODES}. Hydra's own options: --hydra-help"""


cli = hydra_cli("performance_standalone", main, register, schema=PerformanceStandaloneConfig, usage=usage)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    cli()
