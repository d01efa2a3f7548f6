"""Leak-free, deterministic splits: reference vs current by date window, then train/test stratified by the target.

Every decision is a function of the row alone (its id, record date and class) and of a small `plan` computed once
on the driver, so a row lands in the same split whatever the sharding, block size, worker count or order:

- h = splitmix64(id ^ mix(seed)): a bijection of the 64-bit id, so distinct ids never tie;
- current = the last `current_months` calendar months up to the latest record date; reference = the months before
  (only the `reference_months` before, if set); older records and records without a date are excluded;
- test, per class c of the reference: the k_c = round(test_fraction * n_c) rows with the smallest h, so every class
  has exactly its share in test (exact stratification, not only in expectation);
- balanced sampling (split.train_per_class / test_per_class = N): within train (or test) of class c, the N rows
  with the smallest h2 = splitmix64(h ^ salt), a second, independent hash;
- reference rows without a target cannot be stratified and are excluded (counted in the summary).

`make_plan` needs only the id, date and target columns of all rows (3 narrow columns, read on the driver: 10M rows
are ~200 MB) and finds each class's k-th smallest hash with np.partition; `assign` applies the plan to a batch.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np
import pandas as pd

from kon_ray.hashing import splitmix64

EXCLUDED, TRAIN, TEST, CURRENT = 0, 1, 2, 3
SPLITS = {TRAIN: "train", TEST: "test", CURRENT: "current"}
SAMPLE_SALT = 0x5A17  # h2, balanced sampling
FIT_SALT = 0xF17  # h3, the fit sample in state.py
_ALL = np.uint64(2**64 - 1)


def id_hash(ids: pd.Series | np.ndarray, seed: int) -> np.ndarray:
    """h per row: integer ids are mixed directly; other ids go through pandas' stable hash_array first."""
    values = ids.to_numpy() if isinstance(ids, pd.Series) else np.asarray(ids)
    if values.dtype.kind in "iu":
        raw = values.astype(np.int64).view(np.uint64)
    else:
        raw = pd.util.hash_array(np.asarray(values, dtype=object))
    seed_mix = splitmix64(np.array([seed % 2**64], dtype=np.uint64))[0]
    return splitmix64(raw ^ seed_mix)


def salted(h: np.ndarray, salt: int) -> np.ndarray:
    return splitmix64(h ^ np.uint64(salt))


def month_index(dates: np.ndarray) -> np.ndarray:
    """year * 12 + month - 1 per datetime64 value (float, NaN for NaT)."""
    nat = np.isnat(dates)
    months = dates.astype("datetime64[M]").astype(np.int64).astype(np.float64)
    months[nat] = np.nan
    return months


def month_label(index: float | int) -> str:
    return str(np.datetime64(int(index), "M"))


def window_of(month_idx: np.ndarray, plan: Dict[str, Any]) -> np.ndarray:
    """EXCLUDED / TRAIN (meaning: reference) / CURRENT per row from the date alone."""
    out = np.full(month_idx.shape, EXCLUDED, dtype=np.int8)
    current = month_idx >= plan["current_from"]
    reference = month_idx < plan["current_from"]
    if plan["reference_from"] is not None:
        reference &= month_idx >= plan["reference_from"]
    out[reference] = TRAIN
    out[current] = CURRENT
    return out


def class_codes(targets: pd.Series | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Index of each target in classes; -1 for null or a class not seen in the reference."""
    values = targets if isinstance(targets, pd.Series) else np.asarray(targets, dtype=object)
    return pd.Categorical(values, categories=list(classes)).codes.astype(np.int64)


def make_plan(
    ids: np.ndarray,
    month_idx: np.ndarray,
    targets: np.ndarray | pd.Series,
    *,
    seed: int,
    current_months: int,
    reference_months: int | None,
    test_fraction: float,
    train_per_class: int | None,
    test_per_class: int | None,
) -> Dict[str, Any]:
    """The thresholds that decide every row's split; plain ints/strings only (JSON and Ray friendly)."""
    if np.isnan(month_idx).all():
        raise ValueError("no record has a date")
    last = int(np.nanmax(month_idx))
    plan: Dict[str, Any] = {
        "seed": int(seed),
        "last_month": month_label(last),
        "current_from": last - current_months + 1,
        "reference_from": None if reference_months is None else last - current_months - reference_months + 1,
        "test_fraction": float(test_fraction),
    }
    window = window_of(month_idx, plan)
    targets = targets if isinstance(targets, pd.Series) else pd.Series(np.asarray(targets, dtype=object))
    reference = (window == TRAIN) & targets.notna().to_numpy()
    classes = sorted(str(c) for c in pd.unique(targets[reference]))
    plan["classes"] = classes
    codes = class_codes(targets, classes)
    h = id_hash(ids, seed)
    h2 = salted(h, SAMPLE_SALT)
    test_k, test_max, train_max, test_keep = [], [], [], []
    for c in range(len(classes)):
        in_class = reference & (codes == c)
        hc = h[in_class]
        k = int(round(test_fraction * hc.size))
        threshold = int(np.partition(hc, k - 1)[k - 1]) if k > 0 else 0
        test_k.append(k)
        test_max.append(threshold)
        is_test = (h[in_class] <= np.uint64(threshold)) if k > 0 else np.zeros(hc.size, bool)
        train_max.append(_nth_smallest(h2[in_class][~is_test], train_per_class))
        test_keep.append(_nth_smallest(h2[in_class][is_test], test_per_class))
    plan.update(test_k=test_k, test_max=test_max, train_sample_max=train_max, test_sample_max=test_keep)
    return plan


def _nth_smallest(values: np.ndarray, n: int | None) -> int:
    """The sampling threshold keeping the n smallest values; keep-all when there are no more than n."""
    if n is None or values.size <= n:
        return int(_ALL)
    return int(np.partition(values, n - 1)[n - 1])


def assign(ids, month_idx: np.ndarray, targets, plan: Dict[str, Any], sample: bool = True) -> np.ndarray:
    """EXCLUDED / TRAIN / TEST / CURRENT per row (int8); a pure function of the row and the plan.

    sample=False skips balanced sampling: TRAIN is then the whole train portion, which the fit reads.
    """
    window = window_of(month_idx, plan)
    if not (window == TRAIN).any():
        return window
    codes = class_codes(targets, plan["classes"])
    h = id_hash(ids, plan["seed"])
    h2 = salted(h, SAMPLE_SALT)
    known = codes >= 0
    c = np.where(known, codes, 0)
    k = np.asarray(plan["test_k"] or [0], dtype=np.int64)[c]
    test_max = np.asarray(plan["test_max"] or [0], dtype=np.uint64)[c]
    train_max = np.asarray(plan["train_sample_max"] or [0], dtype=np.uint64)[c]
    test_keep = np.asarray(plan["test_sample_max"] or [0], dtype=np.uint64)[c]
    reference = (window == TRAIN) & known
    is_test = reference & (k > 0) & (h <= test_max)
    out = np.where(window == CURRENT, CURRENT, EXCLUDED).astype(np.int8)
    if not sample:
        out[reference & ~is_test] = TRAIN
        out[is_test] = TEST
        return out
    out[reference & ~is_test & (h2 <= train_max)] = TRAIN
    out[is_test & (h2 <= test_keep)] = TEST
    return out
