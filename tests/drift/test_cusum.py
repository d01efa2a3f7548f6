"""CUSUM across batches (kon_ray/drift/cusum.py): a planted slow creep alarms where no single batch leaves the band,
with the numbers worked by hand; and `python -m kon_ray.drift.history` reads the series from MLflow and draws them."""

from __future__ import annotations

import json

import pytest

from kon_ray.drift.config import DriftConfig
from kon_ray.drift.cusum import CusumConfig, all_series, cusum, tracked

HAND = CusumConfig(warmup=3, slack=0.5, decision=5.0)
# PSI of one feature: baseline 0.08, 0.10, 0.12 (mean 0.10, sd 0.02), then a creep of half an sd per batch that
# levels off at 2.5 sd: z = 1.5, 2, 2.5, 2.5, 2.5 -- never above 3, so no single batch alarms.
# S+ = max(0, S+ + z - 0.5): 1.0, 2.5, 4.5, 6.5, 8.5 -> above h = 5 from the 7th batch (index 6) on.
CREEP = [0.08, 0.10, 0.12, 0.13, 0.14, 0.15, 0.15, 0.15]


def test_a_slow_creep_alarms_where_no_single_batch_does():
    s = cusum("psi/kwh", CREEP, HAND)
    assert s.mean == pytest.approx(0.10) and s.sd == pytest.approx(0.02)
    assert s.upper[3:] == pytest.approx([1.0, 2.5, 4.5, 6.5, 8.5])
    assert s.upper[:3] == [None, None, None] and s.lower[3:] == [0.0] * 5
    assert s.alarms == [6, 7] and s.alarm_at == 6
    assert s.band_alarms == []  # the single-batch rule (|z| > 3) never fires


def test_a_falling_accuracy_alarms_on_the_lower_sum_and_gaps_are_skipped():
    # mean 0.90, sd 0.02; then z = -1.5, (no value), -2, -2.5, -2.5: S- = 1.0, 2.5, 4.5, 6.5
    values = [0.90, 0.92, 0.88, 0.87, None, 0.86, 0.85, 0.85]
    s = cusum("performance/domestic/estimated_accuracy", values, HAND)
    assert s.lower[3] == pytest.approx(1.0) and s.lower[4] is None
    assert s.lower[5:] == pytest.approx([2.5, 4.5, 6.5])
    assert s.alarms == [7] and s.band_alarms == [] and s.upper[7] == 0.0


def test_a_jump_leaves_the_band_at_once_and_no_cusum_without_a_scale():
    s = cusum("drift/drifted_share", [0.08, 0.10, 0.12, 0.20], HAND)  # z = 5
    assert s.band_alarms == [3] and s.alarms == []  # S+ = 4.5: one big batch is the band's case
    assert cusum("x", [0.1] * 6, HAND).reason is not None  # the same data checked again: sd = 0
    assert cusum("x", [0.1, 0.2, 0.3], HAND).reason is not None  # nothing after the baseline
    with pytest.raises(Exception, match="warmup"):
        CusumConfig(warmup=1)


def test_series_are_the_drifted_share_the_estimates_and_psi():
    metrics = {"drift/drifted_share": 0.2, "performance/domestic/estimated_accuracy": 0.8, "psi/kwh": 0.1,
               "performance/domestic/month/2026-01/estimated_accuracy": 0.7, "infer/rows": 5.0}
    assert tracked(metrics) == {"drift/drifted_share": 0.2, "performance/domestic/estimated_accuracy": 0.8}
    series = all_series([{"kwh": v} for v in CREEP], [{"drift/drifted_share": 0.1}] * len(CREEP), HAND)
    assert [s.name for s in series] == ["drift/drifted_share", "psi/kwh"]
    assert series[1].alarm_at == 6 and series[0].reason is not None


@pytest.mark.slow  # an MLflow sqlite store (its migrations take seconds) and eight runs
def test_the_history_command_reads_the_series_and_draws_the_cusum(tmp_path):
    from mlflow.tracking import MlflowClient

    from kon_ray.drift.history import build

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("creep")
    accuracy = [0.90, 0.92, 0.88, 0.87, 0.86, 0.85, 0.85, 0.85]
    for i, (psi, acc) in enumerate(zip(CREEP, accuracy)):
        run = client.create_run(experiment, start_time=1_700_000_000_000 + i * 1000, run_name=f"batch-{i}")
        for key, value in (("psi/kwh", psi), ("drift/drifted_share", 0.1 + 0.01 * (i % 2)),
                           ("performance/domestic/estimated_accuracy", acc)):
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
    paths = build(uri, "creep", str(tmp_path / "out"), DriftConfig(), cusum_cfg=HAND)
    document = json.loads(open(paths["json"]).read())["cusum"]
    found = {s["name"]: s for s in document["series"]}
    assert found["psi/kwh"]["alarm_at"] == 6 and found["psi/kwh"]["band_alarms"] == []
    assert found["performance/domestic/estimated_accuracy"]["alarm_at"] == 6  # S- = 1, 2.5, 4.5, 6.5
    assert found["drift/drifted_share"]["alarms"] == []
    page = open(paths["html"]).read()
    assert 'id="cusum-table"' in page and page.count('class="cusum"') == 3
    assert "CUSUM alarm from batch 7" in page
