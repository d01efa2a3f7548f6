"""Stateless derivations: every feature that needs nothing learned from data, as numpy over one pandas batch.

Each family is a small pure function over a (rows x months) matrix or a column, so a unit test can check it on a
5-row frame against numpy. `derive(batch, spec)` runs the families the spec names and returns name -> float64
array; categorical codes, winsorizing and imputation need the fitted state and live in transform.py.

Conventions (the documented behaviour for bad values):
- Series matrices are (months x rows), newest first: m[0] is lag01, the record's own month (<prefix>12 in the raw
  data). Months-major keeps every reduction a sum of contiguous row vectors (3-5x faster than reducing a
  (rows x 12) matrix along its short axis).
- Missing: null, NaN, +inf and -inf all read as missing (NaN); the quality/missing flags count them.
- Negative amounts keep their sign (refunds, credit balances); they are counted/flagged, and log transforms use
  sign(x) * log1p(|x|) so they stay finite and monotone.
- A ratio or growth with a zero or missing denominator is NaN, not inf.
- Statistics over months ignore missing months; with no valid month (or < 2 for a slope) the result is NaN.
- Dates: null, unparseable, before 1900 or after 2100 are unusable (year/month/months NaN, invalid flag 1); a
  date after the record date keeps its year/month but has months NaN and the invalid flag set.
"""

from __future__ import annotations

import warnings
from typing import Dict, Sequence

import numpy as np
import pandas as pd

from kon_ray.errors import DataError
from kon_ray.features.config import WINDOW_STATS
from kon_ray.features.spec import Series, Spec

MONTH_DAYS = 365.25 / 12  # months of tenure = days / MONTH_DAYS
_MIN_DATE = np.datetime64("1900-01-01", "D")
_MAX_DATE = np.datetime64("2100-12-31", "D")


def require_batch_columns(batch: pd.DataFrame, columns: Sequence[str], where: str = "batch") -> None:
    missing = [c for c in columns if c not in batch.columns]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{where}: column {missing[0]!r} is missing{more}; the dataset config expects it")


def to_float(values: pd.Series | np.ndarray) -> np.ndarray:
    """A column as float64 with null, NaN and +/-inf all NaN; bools become 1.0/0.0."""
    if isinstance(values, pd.Series):
        if values.dtype == object or str(values.dtype) in ("boolean", "bool", "bool[pyarrow]"):
            values = pd.to_numeric(values.astype("Float64"), errors="coerce")
        out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        out = np.asarray(values, dtype=np.float64)
    if not out.flags.writeable or out is values:
        out = out.copy()
    out[~np.isfinite(out)] = np.nan
    return out


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|) as float64: tames heavy tails (bills, balances), keeps zero and the sign; NaN stays NaN.
    Also the k-means transform of the segment stage (kon_ray/segment/kmeans.py)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where the denominator is 0 or missing."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=(den != 0) & ~np.isnan(den))
    return out


def series_matrix(batch: pd.DataFrame, series: Series) -> np.ndarray:
    """(months x rows) float64, newest first (m[0] = the record's own month); missing/inf -> NaN."""
    columns = series.columns[::-1]
    matrix = np.empty((len(columns), len(batch)), dtype=np.float64)
    for j, column in enumerate(columns):
        matrix[j] = to_float(batch[column])
    return matrix


def window_stats(m: np.ndarray, w: int) -> Dict[str, np.ndarray]:
    """mean/std (population, ddof=0)/min/max over the w most recent months, missing months ignored."""
    x = m[:w]
    valid = ~np.isnan(x)
    count = valid.sum(axis=0).astype(np.float64)
    mean = safe_divide(np.where(valid, x, 0.0).sum(axis=0), count)
    dev = np.where(valid, x - mean, 0.0)
    std = np.sqrt(safe_divide((dev * dev).sum(axis=0), count))
    # fmin/fmax skip NaN; an all-missing window stays NaN
    return {"mean": mean, "std": std, "min": np.fmin.reduce(x, axis=0), "max": np.fmax.reduce(x, axis=0)}


def slope(m: np.ndarray, w: int) -> np.ndarray:
    """Least-squares slope per month over the w most recent months (time runs oldest -> newest); NaN if < 2."""
    x = m[:w]
    t = np.arange(w - 1, -1, -1, dtype=np.float64)[:, None]  # m[0] (newest) is the latest time
    valid = ~np.isnan(x)
    n = valid.sum(axis=0).astype(np.float64)
    t_mean = safe_divide(np.where(valid, t, 0.0).sum(axis=0), n)
    y_mean = safe_divide(np.where(valid, x, 0.0).sum(axis=0), n)
    dt = np.where(valid, t - t_mean, 0.0)
    dy = np.where(valid, x - y_mean, 0.0)
    out = safe_divide((dt * dy).sum(axis=0), (dt * dt).sum(axis=0))
    out[n < 2] = np.nan
    return out


def growth(m: np.ndarray, k: int) -> np.ndarray:
    """(lag01 - lag(1+k)) / |lag(1+k)|."""
    return safe_divide(m[0] - m[k], np.abs(m[k]))


def calendar_months(rec_month: np.ndarray, months: int) -> np.ndarray:
    """(months x rows) calendar month 1..12 of each lag; lag01 is the record's own month."""
    return (rec_month[None, :].astype(np.int64) - 1 - np.arange(months)[:, None]) % 12 + 1


def seasonality(
    m: np.ndarray, rec_month: np.ndarray, summer: Sequence[int], winter: Sequence[int]
) -> Dict[str, np.ndarray]:
    stats = window_stats(m, m.shape[0])
    mean = stats["mean"]
    cal = calendar_months(np.nan_to_num(rec_month, nan=1.0), m.shape[0]).astype(np.float64)
    cal[:, np.isnan(rec_month)] = np.nan
    valid = ~np.isnan(m)

    def season_mean(months: Sequence[int]) -> np.ndarray:
        mask = valid & np.isin(cal, list(months))
        return safe_divide(np.where(mask, m, 0.0).sum(axis=0), mask.sum(axis=0).astype(np.float64))

    any_valid = valid.any(axis=0)
    rows = np.arange(m.shape[1])
    # the first (most recent) month wins a tie
    peak = cal[np.where(valid, m, -np.inf).argmax(axis=0), rows]
    trough = cal[np.where(valid, m, np.inf).argmin(axis=0), rows]
    return {
        "amplitude": safe_divide(stats["max"] - stats["min"], np.abs(mean)),
        "cv": safe_divide(stats["std"], np.abs(mean)),
        "summer_winter": safe_divide(season_mean(summer), season_mean(winter)),
        "peak_month": np.where(any_valid, peak, np.nan),
        "trough_month": np.where(any_valid, trough, np.nan),
    }


def quality(raw_missing: np.ndarray, m: np.ndarray) -> Dict[str, np.ndarray]:
    return {
        "n_missing": raw_missing.sum(axis=0).astype(np.float64),
        "n_negative": (m < 0).sum(axis=0).astype(np.float64),
        "n_zero": (m == 0).sum(axis=0).astype(np.float64),
    }


def date_features(dates: pd.Series, record: np.ndarray) -> Dict[str, np.ndarray]:
    """months between a date and the record date, its year and month, and the invalid flag."""
    day = parse_dates(dates)
    unusable = np.isnat(day) | (day < _MIN_DATE) | (day > _MAX_DATE)
    after = ~unusable & ~np.isnat(record) & (day > record)
    days = (record - day).astype("timedelta64[D]").astype(np.float64)
    months = np.where(unusable | after | np.isnat(record), np.nan, days / MONTH_DAYS)
    year, month = year_month(np.where(unusable, np.datetime64("NaT"), day).astype("datetime64[D]"))
    return {"months": months, "year": year, "month": month, "invalid": (unusable | after).astype(np.float64)}


def parse_dates(values: pd.Series) -> np.ndarray:
    """datetime64[D]; nulls and unparseable strings -> NaT (never an error)."""
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    else:
        parsed = pd.to_datetime(values, errors="coerce")
    return parsed.to_numpy(dtype="datetime64[D]", na_value=np.datetime64("NaT"))


def year_month(day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nat = np.isnat(day)
    months = day.astype("datetime64[M]").astype(np.int64)
    year = np.where(nat, np.nan, months // 12 + 1970)
    month = np.where(nat, np.nan, months % 12 + 1)
    return year.astype(np.float64), month.astype(np.float64)


def derive(batch: pd.DataFrame, spec: Spec) -> Dict[str, np.ndarray]:
    """Every value/count feature of the spec for one batch: name -> float64 array (codes/freqs excluded)."""
    out: Dict[str, np.ndarray] = {}
    record = parse_dates(batch[spec.date_column])
    _, rec_month = year_month(record)
    matrices: Dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf etc. are handled as NaN by design
        for s in spec.series:
            raw_missing = np.vstack([batch[c].isna().to_numpy() for c in s.columns[::-1]])
            m = series_matrix(batch, s)
            matrices[s.prefix] = m
            raw_missing |= np.isnan(m)
            _series_features(out, s.base, m, raw_missing, rec_month, spec)
        for num, den in spec.ratios:
            _ratio_features(out, f"ratio_{num.base}_{den.base}", matrices[num.prefix], matrices[den.prefix], spec)
        for column in spec.numeric:
            x = to_float(batch[column])
            out[f"num_{column}"] = x
            out[f"num_{column}_log"] = signed_log1p(x)
            out[f"num_{column}_missing"] = np.isnan(x).astype(np.float64)
            out[f"num_{column}_negative"] = (x < 0).astype(np.float64)
        for column in spec.flags:
            x = to_float(batch[column])
            out[f"flag_{column}"] = x
            out[f"flag_{column}_missing"] = np.isnan(x).astype(np.float64)
        for column in spec.dates:
            for key, values in date_features(batch[column], record).items():
                out[f"date_{column}_{key}"] = values
    out["rec_month"] = rec_month
    out["rec_quarter"] = np.floor((rec_month - 1) / 3) + 1
    out["rec_month_sin"] = np.sin(2 * np.pi * rec_month / 12)
    out["rec_month_cos"] = np.cos(2 * np.pi * rec_month / 12)
    return out


def _series_features(
    out: Dict[str, np.ndarray], b: str, m: np.ndarray, raw_missing: np.ndarray, rec_month: np.ndarray, spec: Spec
) -> None:
    months = m.shape[0]
    fam = spec.families
    if "lags" in fam:
        for j in range(months):
            out[f"{b}_lag{j + 1:02d}"] = m[j]
    if "log_lags" in fam:
        logged = signed_log1p(m)
        for j in range(months):
            out[f"{b}_lag{j + 1:02d}_log"] = logged[j]
    if "diffs" in fam:
        diffs = m[:-1] - m[1:]
        for j in range(months - 1):
            out[f"{b}_diff{j + 1:02d}"] = diffs[j]
    if "windows" in fam:
        for w in spec.windows:
            stats = window_stats(m, w)
            for stat in WINDOW_STATS:
                out[f"{b}_{stat}{w:02d}"] = stats[stat]
    if "slopes" in fam:
        for w in spec.windows:
            out[f"{b}_slope{w:02d}"] = slope(m, w)
    if "growth" in fam:
        for k in spec.growth_lags:
            out[f"{b}_growth{k:02d}"] = growth(m, k)
    if "seasonality" in fam:
        for key, values in seasonality(m, rec_month, spec.summer_months, spec.winter_months).items():
            out[f"{b}_{key}"] = values
    if "quality" in fam:
        for key, values in quality(raw_missing, m).items():
            out[f"{b}_{key}"] = values
    if "shares" in fam:
        valid = ~np.isnan(m)
        total = np.where(valid, m, 0.0).sum(axis=0)
        total = np.where(valid.any(axis=0), total, np.nan)
        shares = safe_divide(m, total[None, :])
        for j in range(months):
            out[f"{b}_share{j + 1:02d}"] = shares[j]
        recent = window_stats(m, min(3, months))["mean"]
        out[f"{b}_recent_share"] = safe_divide(recent, window_stats(m, months)["mean"])


def _ratio_features(out: Dict[str, np.ndarray], stem: str, num: np.ndarray, den: np.ndarray, spec: Spec) -> None:
    per_month = safe_divide(num, den)
    for j in range(num.shape[0]):
        out[f"{stem}_lag{j + 1:02d}"] = per_month[j]
    both = ~np.isnan(num) & ~np.isnan(den)  # sums over the months where both series have a value
    for w in spec.windows:
        n = np.where(both[:w], num[:w], 0.0).sum(axis=0)
        d = np.where(both[:w], den[:w], 0.0).sum(axis=0)
        out[f"{stem}_sum{w:02d}"] = safe_divide(n, d)
