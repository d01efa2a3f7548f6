"""The segmentation stage on a tiny features folder through the shared Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kon_ray.errors import DataError
from kon_ray.segment import stage as segment_stage
from kon_ray.segment.config import SegmentConfig
from kon_ray.segment.fit import fit_segment_state, prepare_block
from tests.train.synthetic import make_split_frame, synthetic_context, write_features_dir

THRESHOLDS = [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("blocks_kept", ["in the driver", "in the object store"])
def test_stage_fits_the_same_state_as_the_local_fit(ray_session, tmp_path, monkeypatch, blocks_kept):
    from kon_ray import execution

    if blocks_kept == "in the object store":  # the large-data path: a task per block and k-means iteration
        monkeypatch.setattr(execution, "LOCAL_BLOCK_BYTES", 0)
    seg = SegmentConfig("avaluo", THRESHOLDS, ["kwh", "bill"], clusters=3, kmeans_tolerance=0.0,
                        cluster_log_scale=True)
    ctx = synthetic_context(str(tmp_path / "run"), str(tmp_path / "staged"), segment=seg)
    frame = make_split_frame(300, seed=5)
    write_features_dir(ctx.run_dir, {"train": frame}, features=8, parts=3)
    metrics = segment_stage.run(ctx)
    state = json.loads((tmp_path / "staged" / "segment_state.json").read_text())

    # the local fit on log-scaled values computed here, independently of the stage's own scaling
    logged = frame.assign(kwh=np.log1p(frame["kwh"].abs()) * np.sign(frame["kwh"]),
                          bill=np.log1p(frame["bill"].abs()) * np.sign(frame["bill"]))
    block = prepare_block(logged, "customer_id", "avaluo", THRESHOLDS, ["kwh", "bill"], 42)
    local, _ = fit_segment_state(
        lambda fn, *a: [fn(block, *a)], estrato_column="avaluo", thresholds=THRESHOLDS, features=["kwh", "bill"],
        clusters=3, iterations=seg.kmeans_iterations, tolerance=0.0, seed=42,
    )
    assert state["log_scale"] is True
    np.testing.assert_allclose(state["centroids"], local.centroids, atol=1e-9)
    assert state["iterations"] == local.iterations
    assert metrics["rows"] == 300 and metrics["clusters"] == 3
    # estrato counts by hand from the raw column
    avaluo = frame["avaluo"].to_numpy()
    assert metrics["estrato_0_rows"] == int(np.isnan(avaluo).sum())
    assert metrics["estrato_6_rows"] == int((avaluo >= 5).sum())


def test_stage_names_a_missing_segment_column(ray_session, tmp_path):
    seg = SegmentConfig("avaluo", THRESHOLDS, ["kwh", "no_such"])
    ctx = synthetic_context(str(tmp_path / "run"), str(tmp_path / "staged"), segment=seg)
    write_features_dir(ctx.run_dir, {"train": make_split_frame(20)}, features=8)
    with pytest.raises(DataError, match="'no_such'.*segmentation"):
        segment_stage.run(ctx)
