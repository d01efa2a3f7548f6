"""`python -m kon_ray.drift reference=PATH current=PATH output=DIR [drift.*=...]`: a drift check on any two
Parquet datasets (local or s3://), outside the pipeline. `reference_summary=PATH` (a reference_summary.json
written by an earlier check) replaces `reference=PATH`. Config: conf/drift_standalone.yaml over the same conf/
tree; exit codes as `python -m kon_ray.run` (kon_ray/errors.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kon_ray.cli import guarded, hydra_cli
from kon_ray.terminal import result_stream
from kon_ray.cluster.config import ClusterConfig
from kon_ray.config import register_configs
from kon_ray.drift.config import DriftConfig
from kon_ray.errors import ConfigError

log = logging.getLogger("kon_ray")

@dataclass(frozen=True)
class DriftStandaloneConfig:
    drift: DriftConfig = MISSING
    cluster: ClusterConfig = MISSING
    reference: Optional[str] = None  # Parquet file or folder (local or s3://)
    reference_summary: Optional[str] = None  # or a saved reference_summary.json instead
    current: str = MISSING
    output: str = MISSING  # folder for the reports (local or s3://)
    exclude: List[str] = field(default_factory=list)  # columns not analysed (ids, dates, targets)


def register() -> None:
    register_configs()
    ConfigStore.instance().store(name="base_drift_standalone", node=OmegaConf.structured(DriftStandaloneConfig))


def load(cfg: DictConfig) -> DriftStandaloneConfig:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} has no value; set it with {missing[0]}=...")
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"config key {getattr(exc, 'full_key', '')}: {exc}") from None
    if bool(config.reference) == bool(config.reference_summary):
        raise ConfigError("give exactly one of reference=PATH or reference_summary=PATH")
    return config


def main(cfg: DictConfig) -> int:
    """Validate, start Ray, check, return the exit code (0, or a KonError's code)."""
    return guarded(lambda: _check(cfg))


def _check(cfg: DictConfig) -> int:
    config = load(cfg)
    from kon_ray.cluster.local import init_local_ray
    from kon_ray.drift.check import gate, run_check
    from kon_ray.drift.report import SUMMARY_TXT, summary_text

    init_local_ray(config.cluster)
    report = run_check(config.drift, config.current, config.output, reference=config.reference,
                       reference_summary=config.reference_summary, exclude=config.exclude)
    print(summary_text(report), end="", file=result_stream())
    log.info("reports in %s (%s, drift_report.json, drift_report.html)", config.output, SUMMARY_TXT)
    gate(report, config.drift, config.output)
    return 0


cli = hydra_cli("drift_standalone", main, register)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cli()
