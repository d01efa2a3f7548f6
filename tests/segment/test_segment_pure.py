"""Segmentation's pure functions on hand-checkable data (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kon_ray.errors import DataError
from kon_ray.hashing import id_unit_interval
from kon_ray.segment.estrato import assign_estrato
from kon_ray.segment.fit import fit_segment_state, prepare_block
from kon_ray.segment.kmeans import (
    feature_moments,
    kmeans_pp_init,
    lloyd_partial,
    merge_lloyd,
    merge_moments,
    standardize,
    update_centroids,
)
from kon_ray.segment.state import SegmentState, assign_segments

SIX = np.array([[0, 0], [1, 0], [0, 1], [10, 10], [11, 10], [10, 11]], dtype=float)


def test_estrato_bins_are_left_closed_and_missing_is_zero():
    values = np.array([0.5, 1.0, 1.5, 4.999, 5.0, 7.0, np.nan])
    assert assign_estrato(values, [1, 2, 3, 4, 5]).tolist() == [1, 2, 2, 5, 6, 6, 0]
    assert assign_estrato(values, []).tolist() == [0] * 7


def test_one_lloyd_step_by_hand():
    # start from a poor init, c0=(0,0), c1=(1,0): (0,0),(0,1) go to c0; (1,0) and the far group to c1
    part = lloyd_partial(SIX, np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert part.counts.tolist() == [2, 4]
    assert part.sums.tolist() == [[0, 1], [32, 31]]
    # squared distances: 0 + 0 + 1 + (81+100) + (100+100) + (81+121)
    assert part.inertia == 584.0
    step1 = update_centroids(np.array([[0.0, 0.0], [1.0, 0.0]]), part)
    assert step1.tolist() == [[0.0, 0.5], [8.0, 7.75]]
    step2 = update_centroids(step1, lloyd_partial(SIX, step1))
    np.testing.assert_allclose(step2, [[1 / 3, 1 / 3], [31 / 3, 31 / 3]])


def test_empty_cluster_keeps_its_centre():
    centres = np.array([[0.0, 0.0], [100.0, 100.0], [-50.0, 0.0]])
    new = update_centroids(centres, lloyd_partial(SIX[:3], centres))
    assert new[1].tolist() == [100.0, 100.0] and new[2].tolist() == [-50.0, 0.0]


def test_merged_partial_sums_equal_full_data_sums():
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    whole = lloyd_partial(SIX, centres)
    merged = merge_lloyd(
        [lloyd_partial(SIX[:2], centres), lloyd_partial(SIX[2:5], centres), lloyd_partial(SIX[5:], centres)]
    )
    assert merged.sums.tolist() == whole.sums.tolist()
    assert merged.counts.tolist() == whole.counts.tolist()
    assert merged.inertia == whole.inertia


def test_merged_moments_match_numpy_and_ignore_nan():
    X = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    merged = merge_moments([feature_moments(X[:1]), feature_moments(X[1:4]), feature_moments(X[4:])])
    assert merged.count.tolist() == [5, 4]
    np.testing.assert_allclose(merged.mean, [3.0, 32.5])
    np.testing.assert_allclose(merged.std, [np.std([1, 2, 3, 4, 5]), np.std([10, 30, 40, 50])])


def test_standardize_zero_variance_and_missing_map_to_zero():
    X = np.array([[7.0, 1.0], [7.0, np.nan], [7.0, 3.0]])
    m = feature_moments(X)
    assert m.std.tolist() == [1.0, 1.0]  # column 0 has no spread; column 1: values 1, 3 -> std 1
    assert standardize(X, m.mean, m.std).tolist() == [[0.0, -1.0], [0.0, 0.0], [0.0, 1.0]]


def test_kmeans_pp_picks_distinct_points_and_is_seeded():
    a, b = kmeans_pp_init(SIX, 2, seed=3), kmeans_pp_init(SIX, 2, seed=3)
    assert a.tolist() == b.tolist()
    # the second centre is drawn in proportion to squared distance, so it lands in the other group here
    assert (a[0][0] < 5) != (a[1][0] < 5)


def test_id_hash_is_deterministic_and_uniform():
    ids = np.arange(20_000, dtype=np.int64)
    u = id_unit_interval(ids, salt=42)
    assert u.tolist() == id_unit_interval(ids, salt=42).tolist()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs((u < 0.1).mean() - 0.1) < 0.01
    assert not np.array_equal(u, id_unit_interval(ids, salt=43))


def _frame(n_per_group: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    low = rng.normal([0, 0], 0.3, size=(n_per_group, 2))
    high = rng.normal([8, 80], [0.3, 3.0], size=(n_per_group, 2))
    X = np.vstack([low, high])
    return pd.DataFrame(
        {"customer_id": np.arange(len(X)), "avaluo": np.linspace(0, 10, len(X)), "kwh": X[:, 0], "bill": X[:, 1]}
    )


def test_fit_over_blocks_equals_fit_over_one_block():
    frame = _frame()
    kw = dict(estrato_column="avaluo", thresholds=[1, 2, 3, 4, 5], features=["kwh", "bill"], clusters=2,
              iterations=10, tolerance=1e-9, seed=1)
    prep = dict(id_column="customer_id", estrato_column="avaluo", thresholds=[1, 2, 3, 4, 5], features=["kwh", "bill"],
                seed=1)
    one = [prepare_block(frame, **prep)]
    three = [prepare_block(frame.iloc[s], **prep) for s in (slice(0, 7), slice(7, 41), slice(41, None))]
    s1, f1 = fit_segment_state(lambda fn, *a: [fn(b, *a) for b in one], **kw)
    s3, f3 = fit_segment_state(lambda fn, *a: [fn(b, *a) for b in three], **kw)
    assert s1.converged and s3.converged
    np.testing.assert_allclose(s3.centroids, s1.centroids, atol=1e-12)
    np.testing.assert_allclose(s3.mean, frame[["kwh", "bill"]].mean().to_numpy())
    np.testing.assert_allclose(s3.std, frame[["kwh", "bill"]].std(ddof=0).to_numpy())
    assert sorted(s3.cluster_sizes) == [30, 30] and f3["rows"] == 60 == f1["rows"]
    assert s3.inertia == sorted(s3.inertia, reverse=True)  # Lloyd never increases inertia
    # two well-separated groups: each group is one cluster
    labels = assign_segments(frame, s3)["cluster"].to_numpy()
    assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1 and labels[0] != labels[-1]
    # the state survives its JSON round trip
    import json

    assert SegmentState.from_dict(json.loads(s3.to_json())) == s3


def test_assign_segments_by_hand_on_pandas_and_numpy():
    state = SegmentState(
        estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=["kwh", "bill"],
        mean=[0.0, 10.0], std=[1.0, 10.0], centroids=[[0.0, 0.0], [5.0, 5.0]],
    )
    frame = pd.DataFrame({"avaluo": [0.0, 2.0, np.nan, 9.0], "kwh": [0.1, 5.0, 4.0, np.nan],
                          "bill": [10.0, 60.0, 50.0, 60.0]})
    out = assign_segments(frame, state)
    assert out["estrato"].tolist() == [1, 3, 0, 6]
    # standardized rows: (0.1, 0), (5, 5), (4, 4), (0 [missing -> mean], 5); the last is 25 from both centres and a
    # tie goes to the lower index
    assert out["cluster"].tolist() == [0, 1, 1, 0]
    assert "estrato" not in frame  # the input is not modified
    as_numpy = assign_segments({c: frame[c].to_numpy() for c in frame}, state)
    assert as_numpy["cluster"].tolist() == [0, 1, 1, 0]


def test_assign_segments_names_a_missing_or_text_column():
    state = SegmentState(estrato_column="avaluo", estrato_thresholds=[1, 2, 3, 4, 5], cluster_features=[],
                         mean=[], std=[], centroids=[])
    with pytest.raises(DataError, match="'avaluo' is missing"):
        assign_segments(pd.DataFrame({"x": [1]}), state)
    with pytest.raises(DataError, match="'avaluo' is not numeric"):
        assign_segments(pd.DataFrame({"avaluo": ["high"]}), state)


def test_fit_does_not_depend_on_block_order():
    frame = _frame()
    prep = dict(id_column="customer_id", estrato_column="", thresholds=[], features=["kwh", "bill"], seed=1)
    kw = dict(estrato_column="", thresholds=[], features=["kwh", "bill"], clusters=3, iterations=5, tolerance=0.0,
              seed=1)
    blocks = [prepare_block(frame.iloc[s], **prep) for s in (slice(0, 20), slice(20, 45), slice(45, None))]
    forward, _ = fit_segment_state(lambda fn, *a: [fn(b, *a) for b in blocks], **kw)
    backward, _ = fit_segment_state(lambda fn, *a: [fn(b, *a) for b in blocks[::-1]], **kw)
    np.testing.assert_allclose(forward.centroids, backward.centroids, atol=1e-12)


def test_log_scaled_assignment_uses_signed_log1p():
    state = SegmentState(estrato_column="", estrato_thresholds=[], cluster_features=["bill"], mean=[0.0], std=[1.0],
                         centroids=[[0.0], [np.log(1001.0)]], log_scale=True)
    # log1p(1000) = log(1001) -> the second centre; -1000 -> -log(1001), nearer the first
    out = assign_segments(pd.DataFrame({"bill": [1000.0, -1000.0, 0.0]}), state)
    assert out["cluster"].tolist() == [1, 0, 0]


# --- convergence (issue 28, item 6) ---------------------------------------------------------------------------------

PLANTED = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0]])


def _planted(per_cluster: int = 500, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Four well-separated Gaussian blobs (sd 0.5, centres 6 apart) in 3 features, rows shuffled; the true labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(PLANTED)), per_cluster)
    X = PLANTED[labels] + rng.normal(0, 0.5, size=(len(labels), 3))
    order = rng.permutation(len(labels))
    X, labels = X[order], labels[order]
    frame = pd.DataFrame({"customer_id": np.arange(len(X)), "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    return frame, labels


def _fit_planted(frame: pd.DataFrame, cuts, **overrides):
    prep = dict(id_column="customer_id", estrato_column="", thresholds=[], features=["a", "b", "c"], seed=3)
    blocks = [prepare_block(frame.iloc[a:b], **prep) for a, b in zip(cuts, cuts[1:])]
    kw = dict(estrato_column="", thresholds=[], features=["a", "b", "c"], clusters=4, iterations=100,
              tolerance=1e-4, seed=3)
    return fit_segment_state(lambda fn, *a: [fn(block, *a) for block in blocks], **{**kw, **overrides})


def test_kmeans_converges_on_planted_clusters_and_recovers_them():
    frame, truth = _planted()
    state, facts = _fit_planted(frame, [0, len(frame)])
    assert state.converged and state.iterations < state.max_iterations == 100
    assert facts["center_shift"] <= facts["shift_threshold"] == pytest.approx(1e-4)  # no missing values: variance 1
    assert len(state.inertia) == state.iterations and state.inertia == sorted(state.inertia, reverse=True)
    # every planted cluster is exactly one fitted cluster (a one-to-one map of labels, whatever their numbering)
    found = assign_segments(frame, state)["cluster"].to_numpy()
    pairs = set(zip(truth.tolist(), found.tolist()))
    assert len(pairs) == 4 and len({t for t, _ in pairs}) == 4 and len({f for _, f in pairs}) == 4
    # the centres, back in raw units, are the planted blobs' sample means (computed here from the true labels)
    raw = np.array(state.centroids) * np.array(state.std) + np.array(state.mean)
    for t, f in pairs:
        np.testing.assert_allclose(raw[f], frame[["a", "b", "c"]].to_numpy()[truth == t].mean(axis=0), atol=1e-9)
    # the final inertia is the within-cluster sum of squares of that partition in standardized units
    Z = (frame[["a", "b", "c"]].to_numpy() - state.mean) / np.array(state.std)
    wcss = sum(((Z[truth == t] - Z[truth == t].mean(axis=0)) ** 2).sum() for t in range(4))
    assert state.inertia[-1] == pytest.approx(wcss, rel=1e-12)


def test_kmeans_convergence_does_not_depend_on_the_blocks():
    frame, _ = _planted()
    one, _ = _fit_planted(frame, [0, len(frame)])
    many, _ = _fit_planted(frame, [0, 1, 333, 334, 1200, len(frame)])
    assert (one.iterations, one.converged) == (many.iterations, many.converged)
    np.testing.assert_allclose(many.centroids, one.centroids, atol=1e-12)
    np.testing.assert_allclose(many.inertia, one.inertia, rtol=1e-12)


def _overlapping() -> tuple[pd.DataFrame, np.ndarray]:
    """Four overlapping blobs: Lloyd needs several iterations to settle."""
    rng = np.random.default_rng(11)
    X = np.vstack([rng.normal(c, 1.3, size=(400, 3)) for c in ([0, 0, 0], [3, 1, 0], [1, 3, 1], [2, 2, 4])])
    return pd.DataFrame({"customer_id": np.arange(len(X)), "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}), X


def test_kmeans_stops_at_the_cap_unconverged():
    frame, _ = _overlapping()
    state, facts = _fit_planted(frame, [0, len(frame)], iterations=2, seed=5)
    assert (state.iterations, state.converged, state.max_iterations) == (2, False, 2)
    assert facts["center_shift"] > facts["shift_threshold"]


def test_kmeans_matches_scikit_learn_from_the_same_start():
    """scikit-learn's Lloyd k-means (the oracle), started from kon_ray's k-means++ centres on the same standardized
    data with the same tolerance, stops after the same iterations at the same centres and inertia."""
    cluster = pytest.importorskip("sklearn.cluster")
    frame, X = _overlapping()
    state, _ = _fit_planted(frame, [0, 500, 1000, len(frame)], iterations=300, seed=5)
    assert state.converged and state.iterations > 3

    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    prep = dict(id_column="customer_id", estrato_column="", thresholds=[], features=["a", "b", "c"], seed=3)
    block = prepare_block(frame, **prep)
    sample = block["x"][np.argsort(block["u"], kind="stable")]  # every row is in the k-means++ sample at this size
    start = kmeans_pp_init(standardize(sample, X.mean(axis=0), X.std(axis=0)), 4, seed=5)
    oracle = cluster.KMeans(4, init=start, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(Z)
    np.testing.assert_allclose(state.centroids, oracle.cluster_centers_, atol=1e-9)
    assert state.iterations == oracle.n_iter_
    # state.inertia is each step's, against the centres it assigned to (before they moved); sklearn's inertia_ is
    # against its final centres
    assert lloyd_partial(Z, np.array(state.centroids)).inertia == pytest.approx(oracle.inertia_, rel=1e-9)
    assert state.inertia[-1] >= oracle.inertia_
