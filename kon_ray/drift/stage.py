"""DriftCheck as a pipeline stage: the reference window (preprocess train + test) against the current window.

Reads `features/train`, `features/test` and `features/reference_rest` (together the whole reference window,
whatever balanced sampling chose for training) and `features/current` (current) from PreprocessSplit, and the
segment stage's `segment/segment_state.json` (it runs after segment, before train: its gate still stops a run before
training), analyses every column except the dataset's id, date and target columns and `drift.exclude`, attributes
each feature's PSI by population, estrato and cluster (drift.segment_columns, when empty), and writes
reference_summary.json, drift_report.json, drift_summary.txt and drift_report.html. With
`drift.fail_on_drift=true` and the flag raised it returns, with its metrics, the gate's verdict: the pipeline
publishes the reports and then stops the run (exit code 4).

Prediction drift scores both windows with each population's registered model `<dataset>-<population>` (its latest
version, or the one `drift.prediction_model` names) through InferenceReporting's scorer (kon_ray.model.score).
Which version that is decides the report, so it is part of the stage's key: the pipeline looks it up when it plans
(kon_ray.tracking.registry) and hands the stage exactly those versions, loaded, in `ctx.models`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, Optional

from kon_ray import storage
from kon_ray.config import KonConfig
from kon_ray.context import STAGE_FOLDERS, RunContext
from kon_ray.drift import onepass
from kon_ray.drift import prediction as P
from kon_ray.drift.check import gate, metrics, run_check
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.engine import segment_reads
from kon_ray.drift.segments import SegmentRules
from kon_ray.execution import kon_error_in
from kon_ray.features.spec import POPULATION, calendar_features
from kon_ray.model.registered import Resolution
from kon_ray.model.score import input_columns
from kon_ray.segment.io import split_files
from kon_ray.segment.state import CLUSTER, ESTRATO, SEGMENT_COLUMNS, STATE_FILE, SegmentState
from kon_ray.stages import StageResult

log = logging.getLogger(__name__)

# The pipeline's segment columns when drift.segment_columns is empty: the population every preprocessed row carries,
# and estrato and cluster, which this stage derives per batch from the segment stage's saved state (it runs after
# segment; see README "Drift: the contract", attribution).
PIPELINE_SEGMENTS = (POPULATION, ESTRATO, CLUSTER)


def run(ctx: RunContext) -> StageResult:
    cfg = ctx.config.drift
    dataset = ctx.config.dataset
    features = ctx.input_dir("preprocess")
    # the whole reference window: balanced sampling selects what training reads, not what drift compares
    reference = [storage.join(features, name) for name in ("train", "test", "reference_rest")]
    current = storage.join(features, "current")
    exclude = [dataset.id_column, dataset.date_column, dataset.target_column]
    if not cfg.calendar_features:
        exclude += calendar_features(list(dataset.features.dates))
    if not cfg.segment_columns:  # issue 30: attribution by population, estrato and cluster by default
        cfg = dataclasses.replace(cfg, segment_columns=_default_segments(reference, current))
    # estrato and cluster are no columns of the feature data: the segment stage's rules make them from each batch
    # of both windows, as train and infer do (assign_segments), in the pass that counts the features
    state = SegmentState.from_dict(storage.read_json(storage.join(ctx.input_dir("segment"), STATE_FILE)))
    rules = SegmentRules.of(state, cfg.segment_columns)
    derive = rules if rules.names else None
    # the registered models the pipeline resolved while planning (their versions are in this stage's key) and
    # loaded for this run; none when the stage is run on its own
    resolution: Resolution = ctx.models or Resolution(missing=(("all", "none given to this stage"),))

    def prediction() -> Dict[str, Any]:
        return prediction_drift(resolution, ctx.config, reference, current, cfg, derive)

    report = run_check(cfg, current, ctx.output_dir, reference=reference, exclude=exclude, prediction=prediction,
                       derive=derive)
    log.info("drift: %s", model_line(resolution, dataset.name))
    # the run folder's drift/, where users look
    return StageResult(metrics(report), gate(report, cfg, storage.join(ctx.run_dir, STAGE_FOLDERS["drift"])))


def _default_segments(reference, current: str) -> list:
    """PIPELINE_SEGMENTS: estrato and cluster (derived), and population where every file of both windows has it
    (preprocess always writes it; a window written by other means without it is checked without attribution by
    it, and the log says so)."""
    files = [f for folder in [*reference, current] if storage.exists(folder) for f in split_files(folder)]
    have = set(_columns(files)) | set(SEGMENT_COLUMNS)
    absent = [c for c in PIPELINE_SEGMENTS if c not in have]
    if absent:
        log.info("drift: no attribution by %s (not a column of both windows)", ", ".join(absent))
    return [c for c in PIPELINE_SEGMENTS if c in have]


def model_line(resolution: Resolution, dataset: str) -> str:
    """Which models prediction drift scored with, in one short line: the registered versions, or why none (on a
    first run: nothing registered yet, which is expected, and how a run registers its models)."""
    if resolution.models:
        named = ", ".join(f"{m.name} version {m.version}" for m in resolution.models)
        missing = f"; not {', '.join(p for p, _ in resolution.missing)} ({resolution.reason()})" \
            if resolution.missing else ""
        return f"prediction drift scored with {named}{missing}"
    reasons = {why for _, why in resolution.missing}
    if all(why.startswith(("nothing registered", "no tracking database")) for why in reasons):
        return (f"prediction drift not checked: no {dataset} model is registered yet (expected on a first run;"
                " a run with tracking.register_models=true registers its models for the next)")
    if len(reasons) == 1:  # the same for every population (tracking off, the registry down): said once
        return f"prediction drift not checked: {reasons.pop()}"
    return f"prediction drift not checked: {resolution.reason()}"


def prediction_drift(resolution: Resolution, config: KonConfig, reference, current: str,
                     cfg: Optional[DriftConfig] = None, derive: Optional[SegmentRules] = None) -> Dict[str, Any]:
    """The report's prediction-drift block: the resolved models on the reference window against the current one,
    each probability's PSI attributed by `cfg.segment_columns` as the features' are (`derive`: those made from
    each batch by the run's segment state)."""
    cfg = cfg or config.drift
    described = [m.describe() for m in resolution.models]
    missing = dict(resolution.missing)
    if not resolution.models:
        return dict(P.not_available(f"no model available: {resolution.reason()}"), models=described)
    bundles = list(resolution.bundles)  # loaded by the pipeline just before this stage (kon_ray.tracking.registry)
    missing.update(dict(resolution.failed))
    if not bundles:
        return P.combine({}, described, missing)
    ref_files = [f for folder in reference if storage.exists(folder) for f in split_files(folder)]
    cur_files = split_files(current)
    have = set(_columns(ref_files)) & set(_columns(cur_files))
    wanted = segment_reads(cfg.segment_columns, derive)
    named = {m.population: f"{m.name} version {m.version}" for m in resolution.models}
    usable = []
    for bundle in bundles:
        lacking = [c for c in input_columns([bundle], config.dataset.id_column, None) if c not in have]
        if lacking:
            missing[bundle.population] = (f"{named[bundle.population]} reads column {lacking[0]!r}, which the"
                                          " reference or current window does not have")
        elif any(c not in have for c in wanted):  # the feature check has said so: a DataError naming the file
            missing[bundle.population] = "a column drift.segment_columns needs is not in both windows"
        else:
            usable.append(bundle)
    blocks: Dict[str, Dict[str, Any]] = {}
    if usable:
        try:
            blocks = onepass.prediction_drift(usable, ref_files, cur_files, config.dataset.id_column, cfg,
                                              name="drift_prediction", derive=derive)
        except Exception as exc:  # scoring is part of the report; the feature report must still be written
            cause = kon_error_in(exc) or exc
            log.warning("drift: prediction drift failed: %s", cause)
            missing.update({b.population: f"the model could not score the data ({type(cause).__name__}: {cause})"
                            for b in usable})
    return P.combine(blocks, described, missing)


def _columns(files) -> list:
    """Every column name in the files' footers (a file without one of them would fail the scorer's read)."""
    names: Optional[set] = None
    for file in files:
        these = set(storage.read_metadata(file)[0].names)
        names = these if names is None else names & these
    return sorted(names or ())
