"""`python -m kon_ray.drift reference=PATH current=PATH output=DIR [drift.*=...]`: a drift check on any two
Parquet datasets (local or s3://), outside the pipeline. `reference_summary=PATH` (a reference_summary.json
written by an earlier check) replaces `reference=PATH`. Config: conf/drift_standalone.yaml over the same conf/
tree; exit codes as `python -m kon_ray.run` (kon_ray/errors.py).

The inputs are checked before Ray starts, and every error names this command's own key: `reference` and `current`
must be readable Parquet (a file or a folder of parts), `reference_summary` a readable summary JSON, `output` a
writable folder. A check that stops there leaves no run folder behind.

`tracking.uri=URI` (an MLflow server, sqlite:///file or arn:aws:sagemaker:...) logs the check as one MLflow run:
reports as artifacts, `psi/<feature>`, the flag, the reference's fingerprint (kon_ray/tracking/drift_check.py).
Checks against one reference summary share an experiment (`tracking.experiment`, else drift-<fingerprint>), so
`python -m kon_ray.drift.history` can draw each feature's PSI over the batches. The URI is checked before Ray
starts too; without tracking.uri nothing is tracked and MLflow is not imported.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from kon_ray import storage
from kon_ray.cli import EXIT_CODES, guarded, hydra_cli, started_work
from kon_ray.cluster.config import LocalCluster
from kon_ray.config import load_schema, register_configs
from kon_ray.drift import reference as reference_io
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.identifiers import identifier_columns
from kon_ray.errors import ConfigError, DataError
from kon_ray.storage import check_writable, find_files, read_metadata
from kon_ray.terminal import result_stream
from kon_ray.tracking.config import DriftTrackingConfig

log = logging.getLogger("kon_ray.drift")  # the module's name, also when it runs as __main__ (python -m)

@dataclass(frozen=True)
class DriftStandaloneConfig:
    drift: DriftConfig = MISSING
    cluster: LocalCluster = MISSING  # the check runs on a local Ray (conf/cluster/local.yaml; cluster.* of that kind)
    reference: Optional[str] = None  # Parquet file or folder (local or s3://)
    reference_summary: Optional[str] = None  # or a saved reference_summary.json instead
    current: str = MISSING
    output: str = MISSING  # folder for the reports (local or s3://)
    exclude: List[str] = field(default_factory=list)  # columns not analysed (ids, dates, targets)
    tracking: DriftTrackingConfig = field(default_factory=DriftTrackingConfig)  # off unless tracking.uri is set


def register() -> None:
    register_configs()
    ConfigStore.instance().store(name="base_drift_standalone", node=OmegaConf.structured(DriftStandaloneConfig))


def load(cfg: DictConfig) -> DriftStandaloneConfig:
    config: DriftStandaloneConfig = load_schema(cfg, DriftStandaloneConfig)
    if bool(config.reference) == bool(config.reference_summary):
        raise ConfigError("give exactly one of reference=PATH or reference_summary=PATH")
    return config


def main(cfg: DictConfig) -> int:
    """Validate, start Ray, check, return the exit code (0, or a KonError's code)."""
    return guarded(lambda: _check(cfg))


def check_inputs(config: DriftStandaloneConfig) -> tuple[list, list]:
    """Before Ray starts, from the Parquet footers and the summary alone: the inputs exist and are readable, each
    side has a row, every file of both sides has every column the check compares (the reference's, less `exclude`
    and `drift.exclude`), the output folder is writable; a DataError (exit 3) or ConfigError (exit 2) naming the
    key and file otherwise."""

    excluded = set(config.exclude) | set(config.drift.exclude)
    if config.reference:
        reference = _check_parquet(config.reference, "reference")
        names: dict = {}  # first-seen order over the files, as the check reads them (kon_ray/drift/engine.py)
        for _, schema, _ in reference:
            names.update(dict.fromkeys(schema.names))
        compared = [name for name in names if name not in excluded]
    else:
        reference = []
        compared = _check_summary(str(config.reference_summary), config.drift.psi_bins)
    current = _check_parquet(config.current, "current")
    for files, key in ((reference, "reference"), (current, "current")):
        for file, schema, _ in files:
            lacking = [name for name in compared if name not in schema.names]
            if lacking:
                more = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
                raise DataError(f"{file}: column {lacking[0]!r}{more} is missing ({key}); the check compares every"
                                " column of the reference: add it, or leave it out with exclude=[...]")
    check_writable(config.output, "output")
    return [file for file, _, _ in reference], compared


def skipped_with_reasons(config: DriftStandaloneConfig, files: list, compared: list) -> dict:
    """{column: reason} for the reference's columns the check leaves out and says so in `skipped`: those given in
    exclude=[...] or drift.exclude that the reference has, and its identifiers (kon_ray/drift/identifiers.py)."""

    if not files:  # reference_summary=: its columns were chosen when it was fitted
        return {}
    have = set()
    for file in files:
        have.update(read_metadata(file)[0].names)  # footers again: cheap, and check_inputs stays one answer
    reasons = {name: "excluded (exclude=[...])" for name in config.exclude if name in have}
    reasons.update({name: "excluded (drift.exclude)" for name in config.drift.exclude if name in have})
    reasons.update(identifier_columns(files, compared, typed=config.drift.column_types))
    return reasons


def _check_parquet(path: str, key: str) -> list:
    """(file, schema, rows) of each Parquet file at `path`, from the footers; a DataError naming `key` when there
    is none, one is not Parquet, or none has a row."""

    found = []
    for file in find_files(path, key):  # "PATH: no such file or folder (KEY)", "...: no .parquet files found (KEY)"
        try:
            schema, rows, _ = read_metadata(file)  # the footer only
        except DataError as exc:
            raise DataError(f"{exc} ({key})") from None
        found.append((file, schema, rows))
    if not any(rows for _, _, rows in found):
        raise DataError(f"{path}: no rows ({key})")
    return found


def _check_summary(path: str, psi_bins: int) -> list:
    """The columns of the saved reference summary at `path`, or a DataError naming reference_summary."""
    if not storage.exists(path):
        raise DataError(f"{path}: no such file (reference_summary)")
    try:
        summary = reference_io.load(path, psi_bins=psi_bins)  # JSON on the driver: the checks the check makes
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not text
        reason = getattr(exc, "strerror", None) or exc
        raise DataError(f"{path}: not a readable file ({reason}) (reference_summary)") from None
    except DataError as exc:
        raise DataError(f"{exc} (reference_summary)") from None
    return list(summary.columns)


def _check(cfg: DictConfig) -> int:
    config = load(cfg)
    tracking_uri = _tracking_target(config.tracking)  # a config error (2) before the inputs' data errors (3)
    reference_files, compared = check_inputs(config)
    skip = skipped_with_reasons(config, reference_files, compared)  # reads ids, before Ray starts
    for name, reason in skip.items():
        if reason.startswith("identifier"):
            log.info("drift: %s is not compared: %s", name, reason)
    started_work()
    # deferred: Ray, SciPy and the engine only once the config is valid (--help and config errors stay fast)
    from kon_ray.cluster.local import init_local_ray
    from kon_ray.drift.check import gate, run_check
    from kon_ray.drift.report import REPORT_HTML, REPORT_JSON, SUMMARY_TXT, summary_text

    started = time.time()
    init_local_ray(config.cluster)
    report = run_check(config.drift, config.current, config.output, reference=config.reference,
                       reference_summary=config.reference_summary, skip=skip)
    print(summary_text(report), end="", file=result_stream())
    log.info("reports in %s (%s, %s, %s)", config.output, SUMMARY_TXT, REPORT_JSON, REPORT_HTML)
    verdict = gate(report, config.drift, config.output)
    if tracking_uri is not None:  # a check the gate stops is tracked too: its run ends FAILED, stopped_by=drift_gate
        # deferred: MLflow only when the check is tracked
        from kon_ray.tracking.drift_check import log_check

        log_check(config.tracking, tracking_uri, report, config.output, config.drift, config.current, started,
                  verdict)
    if verdict is not None:
        raise verdict.error()  # exit code 4, after the reports are written and tracked
    return 0


def _tracking_target(tracking: DriftTrackingConfig) -> str | None:
    """Before Ray starts: the MLflow target answers (a ConfigError naming tracking.uri otherwise)."""
    if tracking.uri is None:
        return None
    # deferred: MLflow only when the check is tracked
    from kon_ray.tracking.drift_check import check_target

    return check_target(tracking)


def usage() -> str:
    """`python -m kon_ray.drift --help`."""

    return f"""usage: python -m kon_ray.drift reference=PATH current=PATH output=DIR [KEY=VALUE ...]
       python -m kon_ray.drift reference_summary=OLD/reference_summary.json current=PATH output=DIR

Checks a current dataset for drift against a reference, outside the pipeline, on a local Ray: PSI, KS and
chi-squared per column, a severity per feature and an overall drift flag.

required:
  reference=PATH                the reference: a Parquet file or folder of parts, local or s3://
    or reference_summary=PATH   the reference_summary.json an earlier check wrote (the reference is not re-read)
  current=PATH                  the data to check: a Parquet file or folder of parts
  output=DIR                    where the reports go (local or s3://)

common overrides:
  exclude=[customer_id,...]     columns not analysed; columns unique per reference row (ids) are skipped anyway
  drift.psi_bins=20             and every other drift.* key (conf/drift/default.yaml): thresholds, the gate
  drift.fail_on_drift=true      exit 4 when the drift flag is raised (after the reports are written)
  tracking.uri=URI              log the check to MLflow (a server, sqlite:///FILE); off by default
  cluster.num_cpus=4            the local Ray's size

where things go:
  DIR/                          drift_summary.txt (also printed), drift_report.json, drift_report.html,
                                reference_summary.json (give it as reference_summary= next time)
  outputs/drift/<date>_<time>/  run.log (all the terminal showed, Ray's messages, tracebacks) and .hydra/

{EXIT_CODES}. Hydra's own options: --hydra-help. Drift over time: python -m kon_ray.drift.history --help"""


cli = hydra_cli("drift_standalone", main, register, schema=DriftStandaloneConfig, usage=usage)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cli()
