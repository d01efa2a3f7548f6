"""Independent answers for the drift statistics: numpy, pandas and scipy on the raw values, never kon_ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def psi_numeric(ref: pd.Series, cur: pd.Series, bins: int = 10, eps: float = 1e-4) -> float:
    r = ref.astype("float64")
    c = cur.astype("float64")
    finite = r.dropna().to_numpy()
    edges = np.unique(np.quantile(finite, np.arange(1, bins) / bins)) if len(finite) else np.array([])
    cut = [-np.inf, *edges, np.inf]

    def props(s: pd.Series) -> np.ndarray:
        binned = pd.cut(s.dropna(), bins=cut, right=True)
        counts = binned.value_counts(sort=False).to_numpy()
        return np.append(counts, s.isna().sum()) / len(s)

    return _psi(props(r), props(c), eps)


def psi_categorical(ref: pd.Series, cur: pd.Series, eps: float = 1e-4) -> float:
    r = ref.astype(object).where(ref.notna(), "<NA>").astype(str).value_counts()
    c = cur.astype(object).where(cur.notna(), "<NA>").astype(str).value_counts()
    keys = sorted(set(r.index) | set(c.index))
    pr = np.array([r.get(k, 0) for k in keys]) / len(ref)
    pc = np.array([c.get(k, 0) for k in keys]) / len(cur)
    return _psi(pr, pc, eps)


def _psi(pr: np.ndarray, pc: np.ndarray, eps: float) -> float:
    pr = np.where(pr == 0, eps, pr)
    pc = np.where(pc == 0, eps, pc)
    return float(np.sum((pc - pr) * np.log(pc / pr)))


def ks(ref: pd.Series, cur: pd.Series):
    return stats.ks_2samp(ref.dropna().to_numpy(float), cur.dropna().to_numpy(float), method="asymp")


def chi2(ref: pd.Series, cur: pd.Series):
    r = ref.astype(object).where(ref.notna(), "<NA>").astype(str).value_counts()
    c = cur.astype(object).where(cur.notna(), "<NA>").astype(str).value_counts()
    keys = sorted(set(r.index) | set(c.index))
    table = np.array([[r.get(k, 0) for k in keys], [c.get(k, 0) for k in keys]])
    return stats.chi2_contingency(table, correction=False)


# --- the contract's conventions on raw values (README "Drift: the contract"), for the property tests ---------
# Raw values here are numpy float arrays with NaN for missing (null and NaN alike), or object arrays with None.


def psi_numeric_values(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI with infinities in their own bins: quantile edges from the finite reference values; the finite values
    in pandas.cut's right-closed bins, then -inf, +inf and missing, over all rows."""
    ref, cur = np.asarray(ref, float), np.asarray(cur, float)
    finite = ref[np.isfinite(ref)]
    edges = np.unique(np.quantile(finite, np.arange(1, bins) / bins)) if len(finite) else np.array([])
    cut = [-np.inf, *edges, np.inf]

    def props(x: np.ndarray) -> np.ndarray:
        fin = pd.Series(x[np.isfinite(x)])
        codes = pd.cut(fin, bins=cut, right=True, labels=False)  # bin numbers (labels=False: no label formatting)
        counts = np.bincount(codes.to_numpy(int), minlength=len(cut) - 1)
        extra = [np.sum(x == -np.inf), np.sum(x == np.inf), np.sum(np.isnan(x))]
        return np.append(counts, extra) / len(x)

    return _psi(props(ref), props(cur), eps)


def ks_d(ref: np.ndarray, cur: np.ndarray) -> float:
    """sup |F_ref - F_cur| over the non-missing values (infinities included), from the ECDFs at every pooled
    value; NaN when a side has none. Equal to scipy's ks_2samp statistic on finite data."""
    r = np.sort(np.asarray(ref, float)[~np.isnan(ref)])
    c = np.sort(np.asarray(cur, float)[~np.isnan(cur)])
    if not len(r) or not len(c):
        return float("nan")
    pooled = np.concatenate([r, c])
    d = np.max(np.abs(np.searchsorted(r, pooled, side="right") / len(r)
                      - np.searchsorted(c, pooled, side="right") / len(c)))
    if np.all(np.isfinite(pooled)):
        assert abs(d - stats.ks_2samp(r, c, method="asymp").statistic) <= 1e-12
    return float(d)


def ks_pvalue(d: float, n: int, m: int) -> float:
    """ks_2samp(method="asymp")'s two-sided p-value for D and sample sizes n, m: kstwo.sf(D, round(n m / (n + m)))."""
    return float(np.clip(stats.kstwo.sf(d, np.round(n * m / (n + m))), 0, 1))


def category_table(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """The 2 x K table of category counts, missing (None or NaN) a category, -0.0 the same as 0.0."""
    def key(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ("missing",)
        return ("value", v + 0.0 if isinstance(v, float) else v)

    r = pd.Series([key(v) for v in ref], dtype=object).value_counts()
    c = pd.Series([key(v) for v in cur], dtype=object).value_counts()
    keys = sorted(set(r.index) | set(c.index), key=repr)
    return np.array([[r.get(k, 0) for k in keys], [c.get(k, 0) for k in keys]])


def categorical_stats(ref: np.ndarray, cur: np.ndarray, eps: float = 1e-4) -> dict:
    table = category_table(ref, cur)
    psi = _psi(table[0] / table[0].sum(), table[1] / table[1].sum(), eps)
    if table.shape[1] == 1:
        return {"psi": psi, "chi2": 0.0, "p": 1.0, "dof": 0, "cramers_v": 0.0}
    chi2_, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return {"psi": psi, "chi2": chi2_, "p": p, "dof": dof, "cramers_v": float(np.sqrt(chi2_ / table.sum()))}


def bh(p_values) -> np.ndarray:
    """Benjamini-Hochberg step-up by hand: p_(i) m / i, made monotone from the largest down, capped at 1."""
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    m = len(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


def severity(psi: float, p, moderate: float = 0.1, high: float = 0.25, alpha: float = 0.05) -> str:
    if psi > high:
        return "HIGH"
    if psi >= moderate:
        return "MODERATE" if p is not None and p < alpha else "LOW"
    return "NONE"
