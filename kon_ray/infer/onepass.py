"""InferenceReporting's single pass: per work unit, score, write the unit's predictions, and return small partials.

One task per work unit (kon_ray.execution runs them) reads the unit's rows (only the columns the models need),
scores each record with its population's model, writes `part-<unit index>.parquet` (a retried task overwrites
its own part) and returns:

    rows      records scored
    metrics   {population: metric counts}   (kon_ray.infer.metrics.partial; labelled splits only)
    probs     {population: float32 (rows x classes)} the class probabilities, only on the pass that fits the
              prediction-drift reference (the test split: a few float32 columns)
    drift     {population: drift summary}   counts of the class probabilities on the reference's KS and PSI
              edges (kon_ray.drift.summary.summarise_batch), only on the current split's pass

so metrics and prediction drift never read the predictions again. Everything merges exactly (integer counts, one
float sum per population, probabilities concatenated in unit order), so nothing depends on how the data was cut
into units. The reference of prediction drift is fitted on the driver from the test split's probabilities with
the drift engine's pure functions: exact quantile PSI edges as `np.quantile`, KS edges from every reference value
(the drift stage samples 200k rows to place them; with all values at hand the edges are at least as good and the
KS bound as stated in the drift contract holds).

Models are loaded once per worker process (tasks are not actors): `models()` keeps the bundles keyed by the model
folders and their files' modification time and size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kon_ray import storage
from kon_ray.drift import summary as S
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.reference import NumericReference, ReferenceSummary
from kon_ray.execution import WorkUnit
from kon_ray.infer.score import (
    ACTUAL,
    PREDICTED,
    ModelBundle,
    load_bundle,
    metric_partials,
    prob_columns,
    score_batch,
)
from kon_ray.segment.state import CLUSTER, ESTRATO, STATE_FILE
from kon_ray.train.data import POPULATION_COLUMN

MODEL_FILES = ("model.ubj", "metadata.json", STATE_FILE)  # what a model folder's bundle is loaded from
_MODELS: Dict[Tuple[Any, ...], List[ModelBundle]] = {}  # per worker process: the bundles of the latest key


@dataclass(frozen=True)
class PassSpec:
    """What one split's pass does with each unit; small and picklable (shipped once per pass)."""

    folders: Tuple[str, ...]
    labels: Mapping[str, Tuple[str, ...]]  # population -> class labels, in the model's order
    id_column: str
    target_column: Optional[str]  # None: the split has no labels (no metrics)
    out: str  # this split's predictions folder
    collect: bool = False  # return the class probabilities (the prediction-drift reference)
    drift: Mapping[str, S.BatchPlan] = field(default_factory=dict)  # population -> counts on the reference's edges
    nthread: int = 1  # xgboost threads per task: the execution layer gives each task one CPU


def models(folders: Sequence[str], nthread: int = 1) -> List[ModelBundle]:
    """The model bundles of `folders`, loaded once per process and reloaded only when a model file changed."""
    key = (tuple(_file_stamp(storage.join(folder, name)) for folder in folders for name in MODEL_FILES), nthread)
    bundles = _MODELS.get(key)
    if bundles is None:
        bundles = [load_bundle(folder, nthread) for folder in folders]
        _MODELS.clear()  # one run's models at a time: a long-lived worker does not accumulate boosters
        _MODELS[key] = bundles
    return bundles


def _file_stamp(path: str) -> Tuple[str, Optional[int], Optional[int]]:
    fs, fs_path = storage.filesystem(path)
    info = fs.get_file_info(fs_path)
    return path, info.mtime_ns, info.size


def score_unit(table: pa.Table, unit: WorkUnit, spec: PassSpec) -> Dict[str, Any]:
    """One work unit: score its rows, write its predictions part, return its partials (see the module docstring)."""
    batch = {name: table.column(name).to_numpy() for name in table.column_names}
    pred = score_batch(batch, models(spec.folders, spec.nthread), spec.id_column, spec.target_column)
    write_part(pred, spec, table.schema.field(spec.id_column).type, unit.index)
    out: Dict[str, Any] = {"rows": len(pred[spec.id_column]), "metrics": {}, "probs": {}, "drift": {}}
    if ACTUAL in pred:
        out["metrics"] = metric_partials(pred, spec.labels)
    if spec.collect or spec.drift:
        population = pred[POPULATION_COLUMN]
        for pop, labels in spec.labels.items():
            keep = population == pop
            columns = prob_columns(labels)
            if spec.collect:
                out["probs"][pop] = np.column_stack([pred[c][keep] for c in columns]).astype(np.float32, copy=False)
            if pop in spec.drift:
                probs = pa.table({c: pa.array(pred[c][keep]) for c in columns})
                out["drift"][pop] = S.summarise_batch(probs, spec.drift[pop])
    return out


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def write_part(pred: Mapping[str, np.ndarray], spec: PassSpec, id_type: pa.DataType, index: int) -> None:
    """The unit's predictions as one Parquet file named by the unit's index, with fixed column types (an empty
    part has the same schema as a full one)."""
    types = {spec.id_column: id_type, POPULATION_COLUMN: pa.string(), ESTRATO: pa.int8(), CLUSTER: pa.int16(),
             PREDICTED: pa.string(), ACTUAL: pa.string()}
    table = pa.table({name: pa.array(values, type=types.get(name, pa.float32())) for name, values in pred.items()})
    fs, path = storage.filesystem(storage.join(spec.out, part_name(index)))
    pq.write_table(table, path, filesystem=fs)


@dataclass
class Totals:
    """A pass's merged partials."""

    rows: int = 0
    metrics: List[Dict[str, Any]] = field(default_factory=list)  # per unit; merged by merge_metric_partials
    probs: Dict[str, List[np.ndarray]] = field(default_factory=dict)
    drift: Dict[str, dict] = field(default_factory=dict)


def merge(totals: Optional[Totals], part: Mapping[str, Any]) -> Totals:
    """Add one unit's partials (units arrive in unit order, so concatenated probabilities are in input order)."""
    totals = totals or Totals()
    totals.rows += part["rows"]
    if part["metrics"]:
        totals.metrics.append(part["metrics"])
    for pop, probs in part["probs"].items():
        totals.probs.setdefault(pop, []).append(probs)
    for pop, summary in part["drift"].items():
        totals.drift[pop] = S.merge(totals.drift.get(pop), summary)
    return totals


# --- prediction drift (driver side, pure) --------------------------------------------------------------------


def numeric_config(cfg: DriftConfig) -> DriftConfig:
    """Probabilities are numeric, always (as kon_ray.drift.prediction)."""
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


def counting_plan(reference: ReferenceSummary) -> S.BatchPlan:
    """What the current split's pass counts for one population: its probabilities on the reference's edges."""
    return S.BatchPlan(numeric=tuple(reference.numeric),
                       ks_edges={c: r.ks_edges for c, r in reference.numeric.items()},
                       psi_edges={c: r.psi_edges for c, r in reference.numeric.items()})


def drift_report(reference: ReferenceSummary, current: dict, cfg: DriftConfig) -> Dict[str, Any]:
    """The report's prediction-drift block, as kon_ray.drift.prediction.prediction_drift gives it."""
    from kon_ray.drift.prediction import report_block  # driver only: scipy.stats costs a worker seconds to import

    return report_block(reference, current, cfg)


__all__ = ["PassSpec", "Totals", "models", "score_unit", "write_part", "merge", "fit_reference", "counting_plan",
           "drift_report", "numeric_config", "part_name"]
