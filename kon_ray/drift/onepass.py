"""InferenceReporting's single pass: per work unit, score, write the unit's predictions, and return small partials.

One task per work unit (kon_ray.execution runs them) reads the unit's rows (only the columns the models need),
scores each record with its population's model, writes `part-<unit index>.parquet` (a retried task overwrites
its own part) and returns:

    rows      records scored
    metrics   {population: metric counts}   (kon_ray.model.metrics.partial; labelled splits only)
    probs     {population: float32 (rows x classes)} the class probabilities, only on the pass that fits the
              prediction-drift reference (the test split: a few float32 columns)
    labels    {population: int16 (rows,)} beside them, each row's class index (-1: none the model knows), when
              the split is labelled: the performance estimate's calibration reference
    performance {population: kon_ray.performance.data.Window} the label-free estimate's partials (overall, per
              month of the date column, per estrato and cluster), only on the current split's pass
    drift     {population: drift summary}   counts of the class probabilities on the reference's KS and PSI
              edges (kon_ray.drift.summary.summarise_batch), only on the current split's pass

so metrics and prediction drift never read the predictions again. Everything merges exactly (integer counts, one
float sum per population, probabilities concatenated in unit order), so nothing depends on how the data was cut
into units. The reference of prediction drift is fitted on the driver from the test split's probabilities with
the drift engine's pure functions: exact quantile PSI edges as `np.quantile`, KS edges from every reference value
(the drift stage samples 200k rows to place them; with all values at hand the edges are at least as good and the
KS bound as stated in the drift contract holds).

Models are loaded once per worker process (tasks are not actors): `models()` keeps the bundles keyed by the model
folders and their files' modification time and size. DriftCheck's registered models arrive as bundles in the spec
instead, and its passes write no predictions (`prediction_drift`: the same passes, the same scorer, the same
reference fit and comparison as InferenceReporting's, on the reference and current windows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kon_ray import execution, storage
from kon_ray.drift import summary as S
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.engine import derived, segment_reads
from kon_ray.drift.prediction import not_available, report_block
from kon_ray.drift.reference import NumericReference, ReferenceSummary
from kon_ray.drift.segments import SegmentRules
from kon_ray.execution import WorkUnit
from kon_ray.model.score import (
    ACTUAL,
    PREDICTED,
    ModelBundle,
    input_columns,
    label_index,
    load_bundle,
    metric_partials,
    prob_columns,
    score_batch,
)
from kon_ray.performance.data import WHOLE, Window, add_rows, groups
from kon_ray.performance.estimator import Calibration, Partial
from kon_ray.segment.state import CLUSTER, ESTRATO, STATE_FILE
from kon_ray.train.data import POPULATION_COLUMN
from kon_ray.train.model_folder import METADATA_FILE, MODEL_FILE

log = logging.getLogger(__name__)

MODEL_FILES = (MODEL_FILE, METADATA_FILE, STATE_FILE)  # what a model folder's bundle is loaded from
_MODELS: Dict[Tuple[Any, ...], List[ModelBundle]] = {}  # per worker process: the bundles of the latest key


@dataclass(frozen=True)
class PassSpec:
    """What one split's pass does with each unit; small and picklable (shipped once per pass)."""

    folders: Tuple[str, ...]  # model folders, loaded once per worker process
    labels: Mapping[str, Tuple[str, ...]]  # population -> class labels, in the model's order
    id_column: str
    target_column: Optional[str]  # None: the split has no labels (no metrics)
    out: Optional[str]  # this split's predictions folder; None: write no predictions (DriftCheck)
    collect: bool = False  # return the class probabilities (the prediction-drift reference)
    drift: Mapping[str, S.BatchPlan] = field(default_factory=dict)  # population -> counts on the reference's edges
    nthread: int = 1  # xgboost threads per task: the execution layer gives each task one CPU
    bundles: Tuple[ModelBundle, ...] = ()  # models already loaded (DriftCheck's registered ones) instead of folders
    # population -> its calibration (fitted on the test split): count the label-free estimate's partials
    performance: Mapping[str, Calibration] = field(default_factory=dict)
    month_column: Optional[str] = None  # the estimate's chunks: months of this date column (None: one chunk)
    # DriftCheck's segment columns (issue 30): the pass keeps each scored row's segments, read or made by `derive`
    # (the run's segment state), for the joint tables of the probabilities
    segments: Tuple[str, ...] = ()
    derive: Optional[SegmentRules] = None


def models(folders: Sequence[str], nthread: int = 1) -> List[ModelBundle]:
    """The model bundles of `folders`, loaded once per process and reloaded only when a model file changed."""
    key = (tuple(_file_stamp(storage.join(folder, name)) for folder in folders for name in MODEL_FILES), nthread)
    bundles = _MODELS.get(key)
    if bundles is None:
        bundles = [load_bundle(folder, nthread) for folder in folders]
        _MODELS.clear()  # one run's models at a time: a long-lived worker does not accumulate boosters
        _MODELS[key] = bundles
    return bundles


def _spec_models(spec: PassSpec) -> List[ModelBundle]:
    if not spec.bundles:
        return models(spec.folders, spec.nthread)
    for bundle in spec.bundles:  # this task's own copy of the boosters (unpickled with the spec)
        bundle.booster.set_param({"nthread": spec.nthread})
    return list(spec.bundles)


def _file_stamp(path: str) -> Tuple[str, Optional[int], Optional[int]]:
    fs, fs_path = storage.filesystem(path)
    info = fs.get_file_info(fs_path)
    return path, info.mtime_ns, info.size


def score_unit(table: pa.Table, unit: WorkUnit, spec: PassSpec) -> Dict[str, Any]:
    """One work unit: score its rows, write its predictions part, return its partials (see the module docstring)."""
    batch = {name: table.column(name).to_numpy() for name in table.column_names}
    carry = (spec.month_column,) if spec.performance and spec.month_column else ()
    pred = score_batch(batch, _spec_models(spec), spec.id_column, spec.target_column, carry)
    dates = pred.pop(carry[0]) if carry else None  # the predictions part does not hold it
    if spec.out is not None:
        write_part(pred, spec, table.schema.field(spec.id_column).type, unit.index)
    out: Dict[str, Any] = {"rows": len(pred[spec.id_column]), "metrics": {}, "probs": {}, "labels": {},
                           "segments": {}, "estimate_segments": {}, "drift": {}, "performance": {}}
    if ACTUAL in pred:
        out["metrics"] = metric_partials(pred, spec.labels)
    if spec.collect or spec.drift or spec.performance:
        population = pred[POPULATION_COLUMN]
        segments = segment_table(table, spec) if spec.segments else None
        for pop, labels in spec.labels.items():
            keep = population == pop
            columns = prob_columns(labels)
            # score_batch keeps a population's rows in batch order: the batch's rows of `pop` are its rows
            segs = segments.filter(pa.array(batch[POPULATION_COLUMN] == pop)) if segments is not None else None
            if spec.collect:
                out["probs"][pop] = np.column_stack([pred[c][keep] for c in columns]).astype(np.float32, copy=False)
                if ACTUAL in pred:
                    out["labels"][pop] = label_index(pred[ACTUAL][keep], labels).astype(np.int16)
                    # the estimate's reference segments (the change in accuracy split by estrato and cluster)
                    out["estimate_segments"][pop] = {name: pred[name][keep] for name in (ESTRATO, CLUSTER)}
                if segs is not None:
                    out["segments"][pop] = segs
            if pop in spec.drift:
                probs = pa.table({c: pa.array(pred[c][keep]) for c in columns})
                if segs is not None:
                    for name in segs.column_names:
                        probs = probs.append_column(name, segs.column(name))
                out["drift"][pop] = S.summarise_batch(probs, spec.drift[pop])
            if pop in spec.performance and keep.any():
                out["performance"][pop] = performance_window(pred, keep, labels, spec.performance[pop],
                                                             None if dates is None else dates[keep])
    return out


def month_keys(dates: np.ndarray) -> pa.ChunkedArray:
    """Each date's month as "YYYY-MM" (null where there is no date): the estimate's chunks."""
    months = np.asarray(dates).astype("datetime64[M]")
    # a dictionary array: each distinct month formatted once, not each row (the estimate groups by it anyway)
    distinct, codes = np.unique(months, return_inverse=True)
    names = pa.array(np.datetime_as_string(distinct), mask=np.isnat(distinct))
    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), names)])


def performance_window(pred: Mapping[str, np.ndarray], keep: np.ndarray, labels: Sequence[str],
                       calibration: Calibration, dates: Optional[np.ndarray]) -> Window:
    """One population's label-free estimate partials of a batch of predictions (the rows `keep` selects): whole,
    per month of `dates` (one chunk, WHOLE, without them), per estrato and per cluster; labels where there are."""
    probs = np.column_stack([pred[c][keep] for c in prob_columns(labels)]).astype(np.float64)
    known = label_index(pred[ACTUAL][keep], labels) if ACTUAL in pred else None
    chunks = groups(month_keys(dates)) if dates is not None else [(WHOLE, np.ones(len(probs), dtype=bool))]
    segments = [((name, key), mask) for name in (ESTRATO, CLUSTER)
                for key, mask in groups(pa.chunked_array([pa.array(pred[name][keep])]))]
    window = Window(Partial(len(labels)))
    add_rows(window, calibration, probs, known, chunks, segments)
    return window


def segment_table(table: pa.Table, spec: PassSpec) -> pa.Table:
    """The unit's segment columns (spec.segments), read or made from its rows by `spec.derive`."""
    return derived(table.select(list(segment_reads(spec.segments, spec.derive))), spec.derive).select(
        list(spec.segments))


def write_part(pred: Mapping[str, np.ndarray], spec: PassSpec, id_type: pa.DataType, index: int) -> None:
    """The unit's predictions as one Parquet file named by the unit's index, with fixed column types (an empty
    part has the same schema as a full one)."""
    types = {spec.id_column: id_type, POPULATION_COLUMN: pa.string(), ESTRATO: pa.int8(), CLUSTER: pa.int16(),
             PREDICTED: pa.string(), ACTUAL: pa.string()}
    table = pa.table({name: pa.array(values, type=types.get(name, pa.float32())) for name, values in pred.items()})
    assert spec.out is not None, "write_part needs an output folder (PassSpec.out)"
    fs, path = storage.filesystem(storage.join(spec.out, storage.part_name(index)))
    pq.write_table(table, path, filesystem=fs)


@dataclass
class Totals:
    """A pass's merged partials."""

    rows: int = 0
    metrics: List[Dict[str, Any]] = field(default_factory=list)  # per unit; merged by merge_metric_partials
    probs: Dict[str, List[np.ndarray]] = field(default_factory=dict)
    labels: Dict[str, List[np.ndarray]] = field(default_factory=dict)  # beside probs, in the same order
    segments: Dict[str, List[pa.Table]] = field(default_factory=dict)  # the rows of `probs`, their segments
    # beside labels, the labelled rows' estrato and cluster (the performance estimate's reference segments)
    estimate_segments: Dict[str, Dict[str, List[np.ndarray]]] = field(default_factory=dict)
    drift: Dict[str, dict] = field(default_factory=dict)
    performance: Dict[str, Window] = field(default_factory=dict)


def merge(totals: Optional[Totals], part: Mapping[str, Any]) -> Totals:
    """Add one unit's partials (units arrive in unit order, so concatenated probabilities are in input order)."""
    totals = totals or Totals()
    totals.rows += part["rows"]
    if part["metrics"]:
        totals.metrics.append(part["metrics"])
    for pop, probs in part["probs"].items():
        totals.probs.setdefault(pop, []).append(probs)
    for pop, labels in part["labels"].items():
        totals.labels.setdefault(pop, []).append(labels)
    for pop, columns in part["estimate_segments"].items():
        for name, values in columns.items():
            totals.estimate_segments.setdefault(pop, {}).setdefault(name, []).append(values)
    for pop, segments in part["segments"].items():
        totals.segments.setdefault(pop, []).append(segments)
    for pop, summary in part["drift"].items():
        totals.drift[pop] = S.merge(totals.drift.get(pop), summary)
    for pop, window in part["performance"].items():
        totals.performance[pop] = totals.performance[pop].merge(window) if pop in totals.performance else window
    return totals


# --- prediction drift (driver side, pure) --------------------------------------------------------------------


def numeric_config(cfg: DriftConfig) -> DriftConfig:
    """Probabilities are numeric, always, whatever drift.column_types says."""
    return DriftConfig(**{**cfg.__dict__, "column_types": {}})


def fit_reference(probs: np.ndarray, columns: Sequence[str], cfg: DriftConfig,
                  source: str = "reference predictions") -> ReferenceSummary:
    """The drift reference of the class probabilities (rows x classes): per column the KS edges and slot counts,
    the exact PSI edges (`np.quantile(values, i/B)`, duplicates removed) and PSI counts; the same summary the
    drift engine fits from data."""
    probs = np.asarray(probs)
    numeric = {}
    for j, name in enumerate(columns):
        values = np.asarray(probs[:, j], dtype=np.float64)
        finite = np.sort(values[~np.isnan(values)])
        missing = len(values) - len(finite)
        edges = S.sample_edges(finite, cfg.ks_bins)
        slots = np.append(np.diff(S.sorted_slot_bounds(finite, edges)), missing).astype(np.int64)
        # the drift engine's layout: quantile edges from the finite values; -inf, +inf and missing their own bins
        psi_edges = S.psi_edges_sorted(finite, cfg.psi_bins)
        psi_counts = S.psi_counts_sorted(finite, psi_edges, missing)
        numeric[name] = NumericReference(ks_edges=edges, ks_slots=slots, psi_edges=psi_edges, psi_counts=psi_counts)
    return ReferenceSummary(rows=len(probs), psi_bins=cfg.psi_bins, numeric=numeric, source=source)


def counting_plan(reference: ReferenceSummary, segments: Tuple[str, ...] = ()) -> S.BatchPlan:
    """What the current split's pass counts for one population: its probabilities on the reference's edges, and
    their joint tables with `segments`."""
    return S.BatchPlan(numeric=tuple(reference.numeric),
                       ks_edges={c: r.ks_edges for c, r in reference.numeric.items()},
                       psi_edges={c: r.psi_edges for c, r in reference.numeric.items()}, segments=segments)


def with_joint(reference: ReferenceSummary, probs: np.ndarray, segments: pa.Table) -> ReferenceSummary:
    """The reference with the joint tables of its probabilities (rows x classes) and `segments` (their rows'
    segment columns), counted on its PSI edges by the drift engine's batch function, as the current pass counts."""
    columns = list(reference.numeric)
    table = pa.Table.from_arrays([*(pa.array(probs[:, j]) for j in range(len(columns))), *segments.columns],
                                 columns + segments.column_names)
    plan = replace(counting_plan(reference, tuple(segments.column_names)), count=False)
    return replace(reference, joint=S.sorted_joint(S.summarise_batch(table, plan)["joint"], columns))


WINDOWS = ("the reference window", "the current window")  # DriftCheck's; InferenceReporting's are its two splits


def reference_for(bundle: ModelBundle, totals: Totals, cfg: DriftConfig, windows: Tuple[str, str] = WINDOWS):
    """The population's prediction-drift reference from the reference pass's probabilities, or why there is none."""
    parts = totals.probs.get(bundle.population, [])
    probs = np.concatenate(parts) if parts else np.empty((0, len(bundle.labels)), np.float32)
    if not len(probs):
        return f"no {bundle.population} records in {windows[0]}"
    segments = totals.segments.get(bundle.population)
    try:
        reference = fit_reference(probs, prob_columns(bundle.labels), cfg)
        return with_joint(reference, probs, pa.concat_tables(segments)) if segments else reference
    except Exception as exc:  # drift is part of the report, not a reason to lose the scores and metrics
        log.warning("prediction drift %s: reference failed: %s", bundle.population, exc)
        return f"{type(exc).__name__}: {exc}"


def compare(bundle: ModelBundle, reference, totals: Totals, cfg: DriftConfig,
            windows: Tuple[str, str] = WINDOWS) -> Dict[str, Any]:
    """The population's prediction-drift block (kon_ray.drift.prediction.report_block), or why there is none."""

    if isinstance(reference, str):
        return not_available(reference)
    current: Optional[dict] = totals.drift.get(bundle.population)
    if current is None or current["rows"] == 0:
        return not_available(f"no {bundle.population} records in {windows[1]}")
    try:
        return report_block(reference, current, cfg)
    except Exception as exc:  # drift is part of the report, not a reason to lose the scores and metrics
        log.warning("prediction drift %s: comparison failed: %s", bundle.population, exc)
        return not_available(f"{type(exc).__name__}: {exc}")


def prediction_drift(bundles: Sequence[ModelBundle], reference_files: Sequence[str], current_files: Sequence[str],
                     id_column: str, cfg: DriftConfig, name: str = "prediction_drift",
                     derive: Optional[SegmentRules] = None) -> Dict[str, Dict[str, Any]]:
    """{population: prediction-drift block} of `bundles` on two windows, writing nothing: a reference pass that
    returns the probabilities, the exact reference fit on the driver, a current pass that counts on its edges.
    The passes InferenceReporting makes over test and current, without its predictions and metrics. With
    drift.segment_columns, each probability's PSI is attributed by them as the features' are (`derive`: the
    segment columns made from each batch, the run's segment state)."""
    cfg = numeric_config(cfg)
    labels = {b.population: tuple(b.labels) for b in bundles}
    segments = tuple(cfg.segment_columns)
    columns = list(dict.fromkeys(input_columns(bundles, id_column, None) + list(segment_reads(segments, derive))))
    spec = PassSpec(folders=(), labels=labels, id_column=id_column, target_column=None, out=None, collect=True,
                    bundles=tuple(bundles), segments=segments, derive=derive)
    totals = execution.map_reduce(score_unit, execution.plan(list(reference_files), columns), merge,
                                  columns=columns, kwargs={"spec": spec}, name=f"{name}_reference") or Totals()
    references = {b.population: reference_for(b, totals, cfg) for b in bundles}
    spec = replace(spec, collect=False,
                   drift={p: counting_plan(r, segments) for p, r in references.items() if not isinstance(r, str)})
    totals = execution.map_reduce(score_unit, execution.plan(list(current_files), columns), merge,
                                  columns=columns, kwargs={"spec": spec}, name=f"{name}_current") or Totals()
    return {b.population: compare(b, references[b.population], totals, cfg) for b in bundles}


__all__ = ["PassSpec", "Totals", "models", "score_unit", "write_part", "merge", "month_keys", "performance_window",
           "fit_reference", "counting_plan", "with_joint", "segment_table", "reference_for", "compare",
           "prediction_drift", "numeric_config"]
