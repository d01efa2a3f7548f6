"""What a stage is, in one place: the pipeline, the manifest, the run context and the tracker all read this table.

Adding a stage is one `Stage` entry here and one package with `run(ctx: RunContext) -> dict` (its metrics), or
`-> StageResult` for a stage with a gate: its metrics and, when its rule says so (`drift.fail_on_drift`), a
`GateVerdict`. The pipeline publishes a stage its gate stopped, tells the observer, and then stops the run with exit
code 4 (kon_ray/pipeline.py, the one place a run stops on a verdict; the standalone check,
kon_ray/drift/__main__.py, stops the same way once its reports are tracked).

| stage      | package             | run folder | reads                               | Ray |
|------------|---------------------|------------|-------------------------------------|-----|
| ingest     | kon_ray.ingest      | ingest     | the data files                      | no  |
| preprocess | kon_ray.features    | features   | ingest                              | yes |
| segment    | kon_ray.segment     | segment    | preprocess                          | yes |
| drift      | kon_ray.drift       | drift      | preprocess, segment                 | yes |
| train      | kon_ray.train       | models     | preprocess, segment                 | yes |
| infer      | kon_ray.infer       | reports    | preprocess, segment, train, drift   | yes |

Two names differ from their package on purpose: the pipeline's stage names are the seed's (PreprocessSplit,
TrainDomestic/Industrial, InferenceReporting), while the run folders are named for what a user finds in them
(`features/`, `models/`, `reports/`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

from kon_ray.errors import DriftGateError


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # the module with `run(ctx) -> dict`
    folder: str  # its folder in the run folder
    config: Tuple[str, ...]  # the config paths its outputs depend on (dot paths; part of its manifest key)
    inputs: Tuple[str, ...] = ()  # the stages whose published folders it reads (ctx.input_dir refuses any other)
    needs_ray: bool = True  # False: runs on the driver alone, so a run that stops there never starts Ray
    tracked: str = ""  # what MLflow logs beyond its metrics and artifacts (a hook of kon_ray/tracking/tracker.py)
    # True: it scores with the registered models (prediction drift). The pipeline finds their versions while it
    # plans (they join its manifest key) and hands them, loaded, to the stage in `RunContext.models`.
    registered_models: bool = False

    def function(self) -> Callable[[Any], Union[Dict[str, Any], "StageResult"]]:
        run: Callable[[Any], Union[Dict[str, Any], StageResult]] = importlib.import_module(self.module).run
        return run


@dataclass(frozen=True)
class GateVerdict:
    """A stage's gate stopped the run (`drift.fail_on_drift` and the drift flag raised): which stage, and why in one
    line (what the user reads after "drift gate: ", and the MLflow run's `error` tag)."""

    stage: str
    reason: str

    def error(self) -> DriftGateError:
        """The error that ends the run with exit code 4."""
        return DriftGateError(self.reason)


@dataclass(frozen=True)
class StageResult:
    """What a stage with a gate returns: its metrics, and the verdict when the gate stops the run."""

    metrics: Dict[str, Any]
    gate: Optional[GateVerdict] = None

    @staticmethod
    def of(returned: Union[Dict[str, Any], "StageResult", None]) -> "StageResult":
        """A stage's return value as a StageResult (a plain stage returns its metrics, or nothing)."""
        return returned if isinstance(returned, StageResult) else StageResult(dict(returned or {}))


STAGES: Tuple[Stage, ...] = (
    Stage("ingest", "kon_ray.ingest", "ingest", ("dataset.path", "dataset.columns", "dataset.id_column"),
          needs_ray=False, tracked="data_fingerprint"),
    Stage("preprocess", "kon_ray.features.stage", "features", ("dataset", "split", "seed"), ("ingest",)),
    Stage("segment", "kon_ray.segment.stage", "segment", ("dataset.segment", "seed"), ("preprocess",)),
    # after segment: drift attributes by estrato and cluster with its saved state; before train: the gate stops a
    # run before training
    Stage("drift", "kon_ray.drift.stage", "drift", ("drift",), ("preprocess", "segment"), tracked="drift_evidence",
          registered_models=True),
    Stage("train", "kon_ray.train.stage", "models",
          ("model", "seed", "cluster.train_workers", "cluster.cpus_per_train_worker"), ("preprocess", "segment"),
          tracked="models"),
    Stage("infer", "kon_ray.infer.stage", "reports", ("drift", "performance"),
          ("preprocess", "segment", "train", "drift")),
)

BY_NAME: Dict[str, Stage] = {stage.name: stage for stage in STAGES}
STAGE_ORDER: Tuple[str, ...] = tuple(stage.name for stage in STAGES)


def stage(name: str) -> Stage:
    return BY_NAME[name]
