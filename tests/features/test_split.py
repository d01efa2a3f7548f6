"""Splits: deterministic per row, independent of sharding, exactly stratified, balanced sampling counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kon_ray.features import split as s
from kon_ray.features.derive import parse_dates
from kon_ray.hashing import splitmix64
from tests.features.data import raw_frame


def _plan(frame: pd.DataFrame, **kw):
    args = dict(seed=42, current_months=3, reference_months=None, test_fraction=0.2, train_per_class=None,
                test_per_class=None)
    args.update(kw)
    return s.make_plan(frame["customer_id"].to_numpy(), _months(frame), frame["segment"], **args)


def _months(frame: pd.DataFrame) -> np.ndarray:
    return s.month_index(parse_dates(frame["record_date"]))


def _assign(frame: pd.DataFrame, plan, sample: bool = True) -> np.ndarray:
    return s.assign(frame["customer_id"], _months(frame), frame["segment"], plan, sample=sample)


def test_splitmix64_matches_the_reference_generator():
    # the first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation)
    assert int(splitmix64(np.array([0], np.uint64))[0]) == 0xE220A8397B1DCDAF
    golden = 0x9E3779B97F4A7C15
    assert int(splitmix64(np.array([golden], np.uint64))[0]) == 0x6E789E6AA1B965F4


def test_assignment_does_not_depend_on_sharding_or_order():
    frame = raw_frame(3000, seed=5)
    plan = _plan(frame, train_per_class=100, test_per_class=40)
    whole = pd.Series(_assign(frame, plan), index=frame["customer_id"])
    shuffled = frame.sample(frac=1.0, random_state=1)
    parts = [pd.Series(_assign(chunk, plan), index=chunk["customer_id"]) for chunk in _chunks(shuffled, 7)]
    pd.testing.assert_series_equal(pd.concat(parts).sort_index(), whole.sort_index())


def test_same_seed_same_split_other_seed_other_split():
    frame = raw_frame(2000, seed=5)
    a, b = _assign(frame, _plan(frame)), _assign(frame, _plan(frame))
    np.testing.assert_array_equal(a, b)
    assert (a != _assign(frame, _plan(frame, seed=43))).any()


def test_test_share_is_exact_per_class():
    frame = raw_frame(3000, seed=6)
    split = _assign(frame, _plan(frame, test_fraction=0.25))
    reference = split != s.CURRENT
    for cls, group in frame[reference].groupby("segment"):
        n_test = int((split[reference][frame[reference]["segment"] == cls] == s.TEST).sum())
        assert n_test == round(0.25 * len(group)), cls


def test_current_window_is_the_last_calendar_months():
    frame = raw_frame(2000, seed=7, months_span=12, last="2025-12")
    split = _assign(frame, _plan(frame, current_months=2, reference_months=4))
    months = pd.to_datetime(frame["record_date"]).dt.to_period("M").astype(str)
    assert set(months[split == s.CURRENT]) == {"2025-11", "2025-12"}
    assert set(months[(split == s.TRAIN) | (split == s.TEST)]) == {"2025-07", "2025-08", "2025-09", "2025-10"}
    assert set(months[split == s.EXCLUDED]) == {f"2025-{m:02d}" for m in range(1, 7)}


def test_balanced_sampling_keeps_n_per_class_or_all_of_a_small_class():
    frame = raw_frame(1500, seed=8)
    alto = int((frame["segment"] == "alto").sum())
    frame.loc[frame["segment"] == "alto", "segment"] = ["alto"] * 30 + ["x"] * (alto - 30)
    plan = _plan(frame, train_per_class=60, test_per_class=10)
    split = _assign(frame, plan)
    full = _assign(frame, plan, sample=False)
    for cls in plan["classes"]:
        in_class = (frame["segment"] == cls).to_numpy()
        available_train = int((full[in_class] == s.TRAIN).sum())
        available_test = int((full[in_class] == s.TEST).sum())
        assert int((split[in_class] == s.TRAIN).sum()) == min(60, available_train), cls
        assert int((split[in_class] == s.TEST).sum()) == min(10, available_test), cls
    # the sample is a subset of the unsampled portion
    assert ((split == s.TRAIN) <= (full == s.TRAIN)).all()


def test_rows_without_target_are_excluded_from_reference_but_kept_in_current():
    frame = raw_frame(600, seed=9)
    frame.loc[:49, "segment"] = None
    split = _assign(frame, _plan(frame))
    current = (split == s.CURRENT)
    missing = frame["segment"].isna().to_numpy()
    assert (split[missing & ~current] == s.EXCLUDED).all()
    months = pd.to_datetime(frame["record_date"]).dt.to_period("M").astype(str)
    assert (split[missing & months.isin(["2025-10", "2025-11", "2025-12"]).to_numpy()] == s.CURRENT).all()


def test_string_ids_hash_deterministically():
    ids = pd.Series(["a", "b", "c"])
    np.testing.assert_array_equal(s.id_hash(ids, 1), s.id_hash(ids.copy(), 1))
    assert len(set(s.id_hash(ids, 1).tolist())) == 3


def _chunks(frame: pd.DataFrame, parts: int):
    return [frame.iloc[idx] for idx in np.array_split(np.arange(len(frame)), parts)]
