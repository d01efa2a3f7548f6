"""The drift statistics: one frozen entry per statistic, which everything that computes, grades or reports one
iterates (compare, severity, the JSON, text and HTML reports, the drift history). In the spirit of Evidently's
stattests.

An entry names the statistic, the feature kinds it applies to, the pure function that computes it from one
feature's merged counts (`Counts` -> `Measure`), the DriftConfig keys its thresholds are read from, and how its
value maps to a severity. Its role places it in the severity rule (kon_ray/drift/severity.py) and the report:
- BAND, exactly one (PSI), for every kind: its value graded NONE, MODERATE or HIGH; the feature's `psi`;
- TEST, exactly one per kind (KS numeric, chi-squared categorical): the feature's `test`, `statistic`, `p_value`,
  `effect_size`; inside the MODERATE band its p-value grades the feature MODERATE or LOW;
- MEASURE: reported as `<name>: value` after the test's keys; no grade, the severity is untouched.

Adding a statistic (README "Adding a drift statistic"): its pure function in its own file beside psi.py, ks.py and
chi2.py, and one entry in STATISTICS with the few lines that call it on a feature's Counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from kon_ray.drift import chi2, ks, psi
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.summary import CATEGORICAL, NUMERIC

BAND, TEST, MEASURE = "band", "test", "measure"
KINDS = frozenset({NUMERIC, CATEGORICAL})


def _no_slots() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Counts:
    """One feature's merged counts on both sides, as every statistic reads them."""

    kind: str
    reference: np.ndarray  # numeric: PSI bins (finite bins, -inf, +inf, missing); categorical: categories, missing one
    current: np.ndarray
    reference_slots: np.ndarray = field(default_factory=_no_slots)  # numeric: KS slots (kon_ray.drift.ks)
    current_slots: np.ndarray = field(default_factory=_no_slots)


@dataclass(frozen=True)
class Measure:
    """One statistic of one feature; NaN where it is undefined, and then `note` says why."""

    value: float
    p_value: float = math.nan  # a test's
    effect_size: float = math.nan  # a test's
    fields: Mapping[str, Any] = field(default_factory=dict)  # its own report keys (KS: ks_upper, ks_exact)
    note: str = ""


def number(value: Optional[float]) -> Optional[float]:
    """JSON-safe float: NaN (undefined) becomes null."""
    return None if value is None or not np.isfinite(value) else float(value)


def _no_summary(features: Sequence[Mapping[str, Any]], cfg: DriftConfig) -> Dict[str, Any]:
    return {}


def _no_lines(summary: Mapping[str, Any]) -> List[str]:
    return []


@dataclass(frozen=True)
class Statistic:
    name: str  # BAND, MEASURE: its key in a feature's report; TEST: the feature's `test`
    role: str  # BAND, TEST or MEASURE
    kinds: FrozenSet[str]
    compute: Callable[[Counts, DriftConfig], Measure]  # pure
    thresholds: Tuple[str, ...] = ()  # the DriftConfig keys `grade` reads (the report's summary lists them)
    # BAND: its value -> NONE, MODERATE or HIGH; TEST: its p-value -> MODERATE or LOW; MEASURE: None
    grade: Optional[Callable[[float, Mapping[str, float]], str]] = None
    effect_size_name: str = ""  # TEST: the feature's effect_size_name
    effect_size_title: str = ""  # TEST: how drift_report.html names the effect size
    spread: bool = False  # costly per feature (KS's p-value: up to ~1 s at millions of rows): compare spreads it
    # its entries in the report's summary, from the features of its kinds, and their lines in drift_summary.txt and
    # drift_report.html (KS: how close D is)
    summary: Callable[[Sequence[Mapping[str, Any]], DriftConfig], Dict[str, Any]] = _no_summary
    text: Callable[[Mapping[str, Any]], List[str]] = _no_lines
    html: Callable[[Mapping[str, Any]], List[str]] = _no_lines

    def limits(self, cfg: DriftConfig) -> Dict[str, float]:
        return {key: getattr(cfg, key) for key in self.thresholds}

    def graded(self, value: float, cfg: DriftConfig) -> str:
        if self.grade is None:
            raise TypeError(f"drift statistic {self.name!r} is a {self.role}: it has no grade")
        return self.grade(value, self.limits(cfg))


def significance(p_value: float, limits: Mapping[str, float]) -> str:
    """A test's grade: MODERATE when p < drift.p_value; an undefined p-value (a side without values) never is."""
    return "MODERATE" if not math.isnan(p_value) and p_value < limits["p_value"] else "LOW"


def _psi(counts: Counts, cfg: DriftConfig) -> Measure:
    return Measure(psi.psi(counts.reference, counts.current, cfg.psi_epsilon))


def _ks(counts: Counts, cfg: DriftConfig) -> Measure:
    ref, cur = counts.reference_slots, counts.current_slots
    d_low, d_up = ks.ks_from_slots(ref, cur)
    n, m = int(ref[:-1].sum()), int(cur[:-1].sum())  # the last slot is missing values
    note = ""
    if not math.isfinite(d_low):
        side = "reference" if n == 0 else "current"
        note = f"KS undefined (statistic, p_value, effect_size, ks_upper null): no non-missing {side} value"
    # the exact D lies in [statistic, ks_upper]
    extra = {"ks_upper": number(d_up), "ks_exact": bool(math.isfinite(d_low) and d_up == d_low)}
    return Measure(d_low, ks.ks_pvalue(d_low, n, m), d_low, extra, note)


def _chi2(counts: Counts, cfg: DriftConfig) -> Measure:
    stat, p_value, dof, cramers_v = chi2.chi2_homogeneity(counts.reference, counts.current)
    note = "" if math.isfinite(stat) else "chi-squared undefined (statistic, p_value, effect_size null): no rows"
    return Measure(stat, p_value, cramers_v, {"dof": dof}, note)


def check(entries: Sequence[Statistic]) -> Tuple[Statistic, ...]:
    """The registry, once its rules hold: a broken entry fails when the module is imported, not in a run."""
    keys = {f.name for f in fields(DriftConfig)}
    names = [s.name for s in entries]
    for s in entries:
        if s.role not in (BAND, TEST, MEASURE) or not s.kinds or not s.kinds <= KINDS:
            raise ValueError(f"drift statistic {s.name!r}: role {s.role!r}, kinds {sorted(s.kinds)}")
        if (s.grade is None) != (s.role == MEASURE):
            raise ValueError(f"drift statistic {s.name!r}: a band or a test has a grade, a measure none")
        unknown = [key for key in s.thresholds if key not in keys]
        if unknown:
            raise ValueError(f"drift statistic {s.name!r}: thresholds {unknown} are not drift config keys")
    if len(set(names)) != len(names):
        raise ValueError(f"drift statistics named twice: {names}")
    bands = [s for s in entries if s.role == BAND]
    if len(bands) != 1 or bands[0].kinds != KINDS:
        raise ValueError("the drift statistics need exactly one band, for every kind")
    for kind in sorted(KINDS):
        if sum(s.role == TEST and kind in s.kinds for s in entries) != 1:
            raise ValueError(f"the drift statistics need exactly one test for {kind} features")
    return tuple(entries)


PSI = Statistic("psi", BAND, KINDS, _psi, ("psi_moderate", "psi_high"), psi.band)
KS = Statistic("ks", TEST, frozenset({NUMERIC}), _ks, ("p_value",), significance, effect_size_name="ks_d",
               effect_size_title="KS D", spread=True, summary=ks.bound_summary, text=ks.bound_lines,
               html=ks.bound_html)
CHI2 = Statistic("chi2", TEST, frozenset({CATEGORICAL}), _chi2, ("p_value",), significance,
                 effect_size_name="cramers_v", effect_size_title="Cramér's V")

# The registry, in report order. Read as `statistics.STATISTICS` at call time, so a test can register an entry.
STATISTICS: Tuple[Statistic, ...] = check((PSI, KS, CHI2))


def applying(kind: str) -> List[Statistic]:
    """The statistics of a feature of this kind, in registry order."""
    return [s for s in STATISTICS if kind in s.kinds]


def band_statistic() -> Statistic:
    return next(s for s in STATISTICS if s.role == BAND)


def kind_test(kind: str) -> Statistic:
    return next(s for s in applying(kind) if s.role == TEST)


def measure_each(statistic: Statistic, cfg: DriftConfig, counts: Sequence[Counts]) -> List[Measure]:
    """`statistic` of each feature's counts: the list-in, list-out form the execution layer spreads over CPUs."""
    return [statistic.compute(c, cfg) for c in counts]
