"""Config schema for the synthetic-data generator (`python -m kon_ray.synth`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kon_ray.errors import ConfigError


@dataclass(frozen=True)
class SynthConfig:
    rows: Optional[int] = None  # None: the dataset's embedded default (dataset.sample_rows)
    months: int = 24  # the record dates span this many months, ending at end_month
    end_month: str = "2026-10"  # YYYY-MM, the last month of the span
    drift: float = 1.0  # 0 = no drift between old and new months; 1 = the default, realistic drift
    rows_per_file: int = 250_000  # one Parquet part per chunk; bounds the generator's memory
    output: Optional[str] = None  # None: dataset.path
    seed: int = 7  # same seed and rows => byte-identical Parquet parts
    workers: int = 1  # processes writing parts at once, each holding one part in memory (2: for 10M rows)
    overwrite: bool = False  # replace data already at the output that has another size, or that it did not write

    def __post_init__(self) -> None:
        if self.rows is not None and self.rows < 1:
            raise ConfigError(f"synth.rows must be >= 1, got {self.rows}")
        if self.months < 2:
            raise ConfigError(f"synth.months must be >= 2, got {self.months}")
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", str(self.end_month)):
            raise ConfigError(f"synth.end_month must be YYYY-MM (e.g. 2026-10), got {self.end_month!r}")
        if self.drift < 0:
            raise ConfigError(f"synth.drift must be >= 0, got {self.drift}")
        if self.rows_per_file < 1:
            raise ConfigError(f"synth.rows_per_file must be >= 1, got {self.rows_per_file}")
        if self.seed < 0:
            raise ConfigError(f"synth.seed must be >= 0, got {self.seed}")
        if self.workers < 1:
            raise ConfigError(f"synth.workers must be >= 1, got {self.workers}")
