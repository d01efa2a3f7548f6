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
