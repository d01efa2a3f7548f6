"""What a stage is given: the validated config and the run folder it reads from and publishes to.

A stage is a module with `run(ctx: RunContext) -> dict` (small metrics). It reads earlier stages' published
folders with `ctx.input_dir(stage)` and writes its own outputs under `ctx.output_dir`, a staging folder that the
pipeline publishes in one step after the stage returns, so a failed or interrupted stage never leaves a folder
that looks complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from kon_ray import storage
from kon_ray.config import KonConfig
from kon_ray.errors import ConfigError
from kon_ray.manifest import MANIFEST
from kon_ray.stages import STAGES
from kon_ray.stages import stage as stage_entry

# Each stage's folder in the run folder (kon_ray/stages.py).
STAGE_FOLDERS = {entry.name: entry.folder for entry in STAGES}
# The ingest stage's one output: path, files, rows, schema hash, fingerprint (kon_ray/ingest.py writes it; preprocess
# and tracking read it, here, without importing the stage)
INGEST_SUMMARY = "ingest.json"


@dataclass(frozen=True)
class RunContext:
    config: KonConfig
    plain: Dict[str, Any]  # the resolved config as plain containers: MLflow params and Hydra dumps (stages read config)
    run_dir: str  # the run folder, local or s3://
    output_dir: str = ""  # this stage's staging folder, set by the pipeline for each stage
    stage_paths: Dict[str, str] = field(default_factory=dict)  # where each stage publishes (set by the pipeline)
    stage_keys: Dict[str, str] = field(default_factory=dict)  # each stage's key (kon_ray/manifest.py)
    stage: str = ""  # the stage this context was handed to (set by the pipeline): it may read only its inputs
    # the registered models a stage scores with (kon_ray/model/registered.py: a Resolution), for a stage whose
    # registry entry says `registered_models`; resolved when the pipeline plans, loaded just before the stage runs
    models: Optional[Any] = None

    def stage_dir(self, stage: str) -> str:
        """Where `stage` publishes its outputs for this config and data."""
        return self.stage_paths.get(stage) or storage.join(self.run_dir, STAGE_FOLDERS[stage])

    def input_dir(self, stage: str) -> str:
        """An earlier stage's published folder; a clear error if that stage has not run in this run folder.

        A stage reads only the stages its registry entry declares (they make its manifest key): reading another
        would let that stage's outputs change without this one being recomputed."""
        if self.stage and stage not in stage_entry(self.stage).inputs:
            raise RuntimeError(f"stage {self.stage!r} reads {stage!r}, which kon_ray/stages.py does not declare "
                               f"among its inputs {stage_entry(self.stage).inputs}")
        path = self.stage_dir(stage)
        # planned by the pipeline, a stage is complete only once its manifest is written (kon_ray/manifest.py)
        marker = storage.join(path, MANIFEST) if self.stage_keys else path
        if not storage.exists(marker):
            raise ConfigError(
                f"stage output {path} is missing: run the {stage!r} stage first (include it in stages=[...])"
            )
        return path

    def out(self, *parts: str) -> str:
        return storage.join(self.output_dir, *parts)

    def ingested(self) -> Dict[str, Any]:
        """The ingest stage's published summary (INGEST_SUMMARY) for this run: its files, rows and fingerprint."""
        summary: Dict[str, Any] = storage.read_json(storage.join(self.input_dir("ingest"), INGEST_SUMMARY))
        return summary
