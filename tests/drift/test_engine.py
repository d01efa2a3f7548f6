"""The Ray reduction: every statistic against scipy/numpy on the raw frames, and invariance to the split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kon_ray.drift import reference as reference_io
from kon_ray.drift.compare import compare
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.engine import fit_reference, summarise_current
from kon_ray.drift.ks import ks_pvalue
from tests.drift import oracle

# Few KS bins and a small sample, so the tiny frames exercise the sampled edges and the bound.
CFG = DriftConfig(ks_bins=16, sample_rows=1000)


def _run(ref, cur, cfg=CFG):
    summary = fit_reference(ref, cfg, exclude=["customer_id"])
    return summary, {f["name"]: f for f in compare(summary, summarise_current(summary, cur, cfg), cfg)}


def _blocks(frame: pd.DataFrame, n: int):
    import ray.data

    bounds = np.linspace(0, len(frame), n + 1).astype(int)
    return ray.data.from_pandas([frame.iloc[a:b] for a, b in zip(bounds, bounds[1:])])


@pytest.fixture(scope="module")
def results(ray_session, frames):
    ref, cur = frames
    return _run(_blocks(ref, 1), _blocks(cur, 1))


def test_every_statistic_matches_the_oracle(results, frames):
    ref, cur = frames
    _, got = results
    assert set(got) == {"cont", "disc", "const", "allnan", "cat", "flag"}
    for name in ("cont", "disc", "const", "allnan"):
        assert got[name]["type"] == "numeric"
        assert got[name]["psi"] == pytest.approx(oracle.psi_numeric(ref[name], cur[name]), abs=1e-12), name
    for name in ("disc", "const"):  # few distinct values: every reference value is a KS edge, D is exact
        expected = oracle.ks(ref[name], cur[name])
        assert got[name]["ks_exact"], name
        assert got[name]["statistic"] == pytest.approx(expected.statistic, abs=1e-12), name
        assert got[name]["p_value"] == pytest.approx(expected.pvalue, abs=1e-12), name
    expected = oracle.ks(ref["cont"], cur["cont"])
    low, up = got["cont"]["statistic"], got["cont"]["ks_upper"]
    assert low <= expected.statistic + 1e-12 <= up + 2e-12
    assert got["cont"]["p_value"] == pytest.approx(ks_pvalue(low, ref["cont"].count(), cur["cont"].count()))
    assert got["allnan"]["statistic"] is None and got["allnan"]["p_value"] is None
    for name in ("cat", "flag"):
        expected = oracle.chi2(ref[name], cur[name])
        assert got[name]["type"] == "categorical"
        assert got[name]["statistic"] == pytest.approx(expected.statistic, abs=1e-9)
        assert got[name]["p_value"] == pytest.approx(expected.pvalue, abs=1e-12)
        assert got[name]["psi"] == pytest.approx(oracle.psi_categorical(ref[name], cur[name]), abs=1e-12)


def test_exact_d_within_tolerance_at_default_bins(ray_session, frames):
    ref, cur = frames
    _, got = _run(ref, cur, DriftConfig())  # 2048 bins: every reference value of these frames is an edge
    assert got["cont"]["ks_exact"]
    assert got["cont"]["statistic"] == pytest.approx(oracle.ks(ref["cont"], cur["cont"]).statistic, abs=1e-12)


def test_same_answer_for_one_block_and_seven(ray_session, results, frames):
    ref, cur = frames
    summary_1, one = results
    summary_7, seven = _run(_blocks(ref, 7), _blocks(cur, 7))
    assert summary_1.to_json() == summary_7.to_json()
    assert one == seven


def test_reference_summary_round_trip_gives_identical_report(ray_session, results, frames, tmp_path):
    _, cur = frames
    summary, direct = results
    path = str(tmp_path / "reference_summary.json")
    reference_io.save(summary, path)
    loaded = reference_io.load(path, psi_bins=CFG.psi_bins)
    again = {f["name"]: f for f in compare(loaded, summarise_current(loaded, cur, CFG), CFG)}
    assert again == direct


def test_one_row_inputs(ray_session, frames):
    ref, cur = frames
    _, got = _run(ref.iloc[:1], cur.iloc[:1])
    assert got["disc"]["psi"] == pytest.approx(oracle.psi_numeric(ref["disc"][:1], cur["disc"][:1]), abs=1e-12)
    assert got["cat"]["psi"] == pytest.approx(oracle.psi_categorical(ref["cat"][:1], cur["cat"][:1]), abs=1e-12)


def test_missing_column_in_current_is_a_data_error(ray_session, frames):
    from kon_ray.errors import DataError

    ref, cur = frames
    summary = fit_reference(ref, CFG, exclude=["customer_id"])
    with pytest.raises(DataError, match="column 'disc' is missing"):
        summarise_current(summary, cur.drop(columns=["disc"]), CFG)
