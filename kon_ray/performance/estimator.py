"""Confidence-based performance estimation (CBPE), pure numpy: no Ray, no I/O. Every input is a batch of rows
(class probabilities, a label index or -1 where there is none); every count is a mergeable partial, so one pass
over any split of the rows into batches (work units, row groups, files) gives the same numbers, bit for bit.

Method, in the order the command runs it:

1. **Calibration on the reference** (`ReferenceBins`, `fit_calibration`). Per class k, one-vs-rest: the rows'
   probability p_k falls in one of `bins` equal-width bins of [0, 1]; per bin the partial counts the rows, those
   labelled k, and the sum of p_k. An increasing isotonic fit (weighted pool-adjacent-violators) of the bins'
   positive rates against their mean scores, weighted by their rows, is the calibration map; a row's calibrated
   probability is the fit interpolated linearly at its own p_k (clipped to the ends outside the reference's range:
   sklearn's `IsotonicRegression(out_of_bounds="clip")` on the binned points, which the tests use as an oracle).
   Binning first makes the fit a merge of counts, exact on any split, at the cost of a resolution of 1/bins.
   The calibrated probabilities of a row are then normalised to sum to 1 (the raw ones where all are 0).
2. **Expected calibration error**, per class, before: sum_b n_b |mean score_b - positive rate_b| / N; after:
   sum_b n_b |fit_b - positive rate_b| / N, the fit at the bin's mean score (in sample: the reference the map was
   fitted on, so it is optimistic; it says how miscalibrated the model was, and that the map took it out).
3. **Expected confusion matrix** of a window (`Partial`): E[j][k] = sum, over the rows predicted j (argmax of the
   raw probabilities, first on ties), of their calibrated probability of class k. Expected accuracy is
   trace(E) / n; expected macro F1 is the mean over classes of 2 E[k][k] / (predicted_k + expected actual_k), over
   the classes where that denominator is not 0 (the realized macro F1 uses the same rule).
4. **Sampling band** (`estimate`): if the calibrated probabilities are right, each row's true class is an
   independent categorical draw with those probabilities, and the realized metric varies around the estimate.
   Its variance by the delta method: the metric linearised in the per-class true-positive and false-negative
   counts is a sum over rows of w_pred(row) . y_row, whose variance is
   sum_j [ sum_k w_jk^2 E[j][k] - w_j^T S[j] w_j ], with S[j][k][l] = sum over rows predicted j of c_k c_l.
   For accuracy (w_jk = 1 if k == j, over n) it is exactly sum_rows c_pred (1 - c_pred) / n^2, the Poisson
   binomial variance; for macro F1 it is the first-order approximation, with the covariances between classes.
   The band is estimate +/- 3 standard errors, clipped to [0, 1]. It does not include the calibration map's own
   uncertainty (a finite reference); with a small reference the band is too narrow.
5. **Unseen regions**: a row is unseen when the reference has no row with the same predicted class whose score
   for that class fell in the same bin. Above `unseen_threshold` of a window's rows, the estimate is marked
   unreliable: the calibration map there is an extrapolation.
6. **Alarms** (`thresholds`): the reference cut into chunks of the current chunks' size, each estimated as a
   current chunk; a current chunk alarms when its estimate leaves mean +/- 3 sd of the reference chunks'.

Exact sums: calibrated probabilities and their products are added as 32-bit fixed point integers (`SCALE`;
rounding of at most 2^-33 per row), in int64 within a batch and in Python ints across batches, so the order and
the split of the rows never change a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SCALE = 1 << 32  # fixed point: a probability p is counted as round(p * SCALE)
SLICE = 65_536  # rows per step inside a batch (bounds the (rows, K, K) products' memory)


def _fixed(values: np.ndarray) -> np.ndarray:
    return np.rint(values * SCALE).astype(np.int64)


@dataclass(frozen=True)
class Terms:
    """At most SLICE rows' fixed-point terms: calibrated p_k (n, K) and p_k p_l (n, K*K)."""

    fixed: np.ndarray
    products: np.ndarray

    @staticmethod
    def of(calibrated: np.ndarray) -> "Terms":
        n, k = calibrated.shape
        return Terms(_fixed(calibrated), _fixed(calibrated[:, :, None] * calibrated[:, None, :]).reshape(n, k * k))

    def select(self, rows: np.ndarray) -> "Terms":
        return Terms(self.fixed[rows], self.products[rows])


def _by_class(values: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Column sums of `values` (n, m) fixed-point int64 over the rows of each predicted class: (k, m) Python ints.
    One bincount per column instead of a boolean selection per class; its float64 sums are exact, since at most
    SLICE (2^16) values below 2^32 add up to less than 2^53."""
    out = np.empty((k, values.shape[1]), dtype=object)
    for column in range(values.shape[1]):
        sums = np.bincount(pred, weights=values[:, column], minlength=k)
        out[:, column] = np.rint(sums).astype(np.int64).astype(object)
    return out


def _zeros(*shape: int) -> np.ndarray:
    """A Python-int array: sums that never overflow and add up exactly in any order."""
    out = np.empty(shape, dtype=object)
    out.fill(0)
    return out


def score_bins(probs: np.ndarray, bins: int) -> np.ndarray:
    """The bin of each probability among `bins` equal-width bins of [0, 1] (1.0 in the last)."""
    return np.clip((probs * bins).astype(np.int64), 0, bins - 1)


def predicted(probs: np.ndarray) -> np.ndarray:
    """The model's predicted class: the argmax of its raw probabilities, the first on ties."""
    return np.argmax(probs, axis=1)


# ---- 1. calibration -------------------------------------------------------------------------------------------


@dataclass
class ReferenceBins:
    """The reference's counts per class and score bin (mergeable): rows, rows labelled with that class, the sum of
    the scores (fixed point), and `region`: rows predicted that class whose score for it is in that bin."""

    classes: int
    bins: int
    rows: np.ndarray = field(init=False)
    positives: np.ndarray = field(init=False)
    score_sum: np.ndarray = field(init=False)
    region: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rows = _zeros(self.classes, self.bins)
        self.positives = _zeros(self.classes, self.bins)
        self.score_sum = _zeros(self.classes, self.bins)
        self.region = _zeros(self.classes, self.bins)

    def add(self, probs: np.ndarray, labels: np.ndarray) -> "ReferenceBins":
        """Count a batch: probs (n, K), labels (n,) class indices (every reference row has one)."""
        k, b = self.classes, self.bins
        binned = score_bins(probs, b)
        fixed = _fixed(probs)
        for c in range(k):
            self.rows[c] += np.bincount(binned[:, c], minlength=b).astype(object)
            self.positives[c] += np.bincount(binned[labels == c, c], minlength=b).astype(object)
            sums = np.zeros(b, dtype=np.int64)
            np.add.at(sums, binned[:, c], fixed[:, c])
            self.score_sum[c] += sums.astype(object)
        pred = predicted(probs)
        self.region += np.bincount(pred * b + binned[np.arange(len(pred)), pred],
                                   minlength=k * b).reshape(k, b).astype(object)
        return self

    def merge(self, other: "ReferenceBins") -> "ReferenceBins":
        out = ReferenceBins(self.classes, self.bins)
        for name in ("rows", "positives", "score_sum", "region"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        return out


def isotonic(y: Sequence[float], w: Sequence[float]) -> np.ndarray:
    """The non-decreasing sequence closest to `y` in weighted least squares (pool adjacent violators)."""
    means: List[float] = []
    weights: List[float] = []
    sizes: List[int] = []
    for value, weight in zip(y, w):
        means.append(float(value))
        weights.append(float(weight))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            pooled = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            size = sizes[-2] + sizes[-1]
            del means[-1], weights[-1], sizes[-1]
            means[-1], weights[-1], sizes[-1] = pooled, total, size
    return np.repeat(np.array(means, dtype=float), sizes)


@dataclass(frozen=True)
class ClassCalibration:
    x: np.ndarray  # the reference's non-empty bins' mean scores, increasing
    y: np.ndarray  # the isotonic fit there
    rows: int
    positives: int
    ece_before: float
    ece_after: float


@dataclass(frozen=True)
class Calibration:
    bins: int
    per_class: Tuple[ClassCalibration, ...]
    seen: np.ndarray  # (K, bins) bool: the reference has rows predicted k with a score for k in that bin

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, K), each row normalised to sum to 1 (the raw row where all map to 0)."""
        cal = np.column_stack([np.interp(probs[:, k], c.x, c.y) for k, c in enumerate(self.per_class)])
        total = cal.sum(axis=1, keepdims=True)
        zero = total[:, 0] <= 0
        if zero.any():
            cal[zero] = probs[zero]
            total[zero] = probs[zero].sum(axis=1, keepdims=True)
        return cal / total

    def unseen(self, probs: np.ndarray, pred: Optional[np.ndarray] = None) -> np.ndarray:
        """Per row: its (predicted class, score bin) had no reference row."""
        pred = predicted(probs) if pred is None else pred
        binned = score_bins(probs[np.arange(len(pred)), pred], self.bins)
        return ~self.seen[pred, binned]


def fit_calibration(ref: ReferenceBins) -> Calibration:
    per_class = []
    for k in range(ref.classes):
        rows = ref.rows[k].astype(float)
        used = rows > 0
        n = rows[used]
        mean = (ref.score_sum[k][used].astype(float) / SCALE) / n
        rate = ref.positives[k][used].astype(float) / n
        fit = isotonic(rate, n)
        total = float(n.sum())
        per_class.append(ClassCalibration(
            x=mean, y=fit, rows=int(total), positives=int(ref.positives[k].sum()),
            ece_before=float(np.sum(n * np.abs(mean - rate)) / total),
            ece_after=float(np.sum(n * np.abs(fit - rate)) / total)))
    return Calibration(ref.bins, tuple(per_class), ref.region.astype(np.int64) > 0)


# ---- 3. a window's partial ------------------------------------------------------------------------------------


@dataclass
class Partial:
    """What one window (a chunk, a segment, all of it) adds up to; `merge` is exact and order-free."""

    classes: int
    rows: int = 0
    predicted: np.ndarray = field(init=False)  # (K,) rows predicted k
    expected: np.ndarray = field(init=False)  # (K, K) fixed point: [predicted j][true k] sum of calibrated p_k
    second: np.ndarray = field(init=False)  # (K, K, K) fixed point: [j][k][l] sum of p_k p_l (calibrated)
    unseen: int = 0
    labelled: int = 0
    realized: np.ndarray = field(init=False)  # (K, K) counts [predicted j][label k] of the labelled rows

    def __post_init__(self) -> None:
        k = self.classes
        self.predicted = _zeros(k)
        self.expected = _zeros(k, k)
        self.second = _zeros(k, k, k)
        self.realized = _zeros(k, k)

    def add(self, calibrated: np.ndarray, pred: np.ndarray, unseen: np.ndarray,
            labels: Optional[np.ndarray] = None) -> "Partial":
        """Count a batch: calibrated (n, K), pred (n,), unseen (n,) bool, labels (n,) class index or -1 (none)."""
        for start in range(0, len(pred), SLICE):
            part = slice(start, start + SLICE)
            self.add_terms(Terms.of(calibrated[part]), pred[part], unseen[part], count_rows=False)
        self._count(pred, unseen, labels)
        return self

    def add_terms(self, terms: "Terms", pred: np.ndarray, unseen: np.ndarray, labels: Optional[np.ndarray] = None,
                  count_rows: bool = True) -> "Partial":
        """Count at most SLICE rows whose fixed-point terms are computed already (add_rows computes them once per
        slice for the whole window, its chunk and its segments)."""
        k = self.classes
        self.expected += _by_class(terms.fixed, pred, k)
        self.second += _by_class(terms.products, pred, k).reshape(k, k, k)
        if count_rows:
            self._count(pred, unseen, labels)
        return self

    def _count(self, pred: np.ndarray, unseen: np.ndarray, labels: Optional[np.ndarray]) -> None:
        k = self.classes
        self.rows += len(pred)
        self.predicted += np.bincount(pred, minlength=k).astype(object)
        self.unseen += int(np.count_nonzero(unseen))
        if labels is not None:
            known = labels >= 0
            self.labelled += int(np.count_nonzero(known))
            self.realized += np.bincount(pred[known] * k + labels[known],
                                         minlength=k * k).reshape(k, k).astype(object)

    def merge(self, other: "Partial") -> "Partial":
        out = Partial(self.classes)
        out.rows, out.unseen, out.labelled = (self.rows + other.rows, self.unseen + other.unseen,
                                              self.labelled + other.labelled)
        for name in ("predicted", "expected", "second", "realized"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        return out


def macro_f1(confusion: np.ndarray) -> Optional[float]:
    """Macro F1 of a [predicted][true] matrix (counts or expected counts): the mean of 2 C[k][k] /
    (predicted_k + actual_k) over the classes where that is not 0; None when there is none."""
    predicted_k = confusion.sum(axis=1)
    actual_k = confusion.sum(axis=0)
    denominator = predicted_k + actual_k
    used = denominator > 0
    if not used.any():
        return None
    return float(np.mean(2 * np.diag(confusion)[used] / denominator[used]))


def accuracy(confusion: np.ndarray) -> Optional[float]:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total > 0 else None


@dataclass(frozen=True)
class Estimate:
    rows: int
    estimated: Dict[str, float]
    standard_error: Dict[str, float]
    lower: Dict[str, float]
    upper: Dict[str, float]
    realized: Optional[Dict[str, Optional[float]]]  # on the window's labelled rows; None without labels
    labelled: int
    unseen_share: float
    expected_confusion: np.ndarray  # (K, K) [predicted][true]


METRICS = ("accuracy", "macro_f1")


def estimate(partial: Partial) -> Estimate:
    """CBPE of one window from its partial: the estimates, their standard errors, the +/-3 SE band, and the
    realized values when the window has labels (module docstring, 3 and 4)."""
    if partial.rows == 0:
        raise ValueError("an empty window has no estimate")
    n = float(partial.rows)
    expected = partial.expected.astype(float) / SCALE
    second = partial.second.astype(float) / SCALE
    count = partial.predicted.astype(float)
    diagonal = np.diag(expected)
    values = {"accuracy": float(diagonal.sum() / n)}
    variances = {"accuracy": float(sum(expected[j, j] - second[j, j, j] for j in range(partial.classes)) / n**2)}
    # macro F1 = mean_k 2 T_k / (T_k + P_k + F_k), T = E[k][k], P = rows predicted k (fixed), F = actual_k - T_k
    actual = expected.sum(axis=0)
    denominator = count + actual
    used = denominator > 0
    m = int(used.sum())
    values["macro_f1"] = float(np.mean(2 * diagonal[used] / denominator[used]))
    d = np.where(used, denominator, 1.0)
    grad_t = np.where(used, 2 * (count + actual - diagonal) / d**2, 0.0) / m  # d/dT_k
    grad_f = np.where(used, -2 * diagonal / d**2, 0.0) / m  # d/dF_k
    variance = 0.0
    for j in range(partial.classes):
        w = grad_f.copy()
        w[j] = grad_t[j]
        variance += float(np.sum(w**2 * expected[j]) - w @ second[j] @ w)
    variances["macro_f1"] = variance
    errors = {name: math.sqrt(max(v, 0.0)) for name, v in variances.items()}
    realized = None
    if partial.labelled:
        confusion = partial.realized.astype(float)
        realized = {"accuracy": accuracy(confusion), "macro_f1": macro_f1(confusion)}
    return Estimate(
        rows=partial.rows, estimated=values, standard_error=errors,
        lower={name: max(0.0, values[name] - 3 * errors[name]) for name in METRICS},
        upper={name: min(1.0, values[name] + 3 * errors[name]) for name in METRICS},
        realized=realized, labelled=partial.labelled, unseen_share=partial.unseen / n,
        expected_confusion=expected)


def inside(est: Estimate) -> Optional[Dict[str, Optional[bool]]]:
    """Per metric: whether the realized value fell inside the band (None without labels)."""
    if est.realized is None:
        return None
    return {name: (None if est.realized[name] is None else bool(est.lower[name] <= est.realized[name]  # type: ignore[operator]
                                                                  <= est.upper[name]))
            for name in METRICS}


def reliability(est: Estimate, unseen_threshold: float) -> List[str]:
    """The reasons not to trust an estimate (empty: none known)."""
    reasons = []
    if est.unseen_share > unseen_threshold:
        reasons.append(f"{est.unseen_share:.1%} of rows fall in score regions (predicted class, score bin) the"
                       f" reference never saw (threshold {unseen_threshold:.1%}): the calibration is extrapolated")
    return reasons


# ---- 6. alarms ------------------------------------------------------------------------------------------------


def thresholds(values: Sequence[float], sds: float = 3.0) -> Optional[Dict[str, float]]:
    """mean +/- `sds` standard deviations (sample, ddof=1) of the reference chunks' estimates; None with fewer than
    two chunks."""
    if len(values) < 2:
        return None
    array = np.asarray(values, dtype=float)
    mean, sd = float(array.mean()), float(array.std(ddof=1))
    return {"mean": mean, "sd": sd, "lower": mean - sds * sd, "upper": mean + sds * sd}


def alarms(est: Estimate, bands: Dict[str, Optional[Dict[str, float]]]) -> List[str]:
    """The metrics whose estimate leaves its reference band."""
    out = []
    for name in METRICS:
        band = bands.get(name)
        if band is not None and not band["lower"] <= est.estimated[name] <= band["upper"]:
            out.append(name)
    return out
