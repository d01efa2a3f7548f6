"""The one-pass inference: metrics equal hand counts from the written predictions, the same results (metrics,
prediction drift, the performance estimate's partials) for any number of work units and any file layout, prediction
drift as the drift contract states it, models loaded once per process."""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import ks_2samp

from kon_ray import execution
from kon_ray.drift import onepass
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.prediction import report_block
from kon_ray.infer import estimate
from kon_ray.infer import stage as infer_stage
from kon_ray.model import metrics as M
from kon_ray.model.score import input_columns, load_bundle, merge_metric_partials
from kon_ray.segment.config import SegmentConfig
from tests.train.synthetic import synthetic_context

POPULATIONS = ("domestic", "industrial")


@pytest.fixture(scope="module")
def staged(ray_session, scored_run):
    """The whole stage run once on the shared run folder: (staged folder, stage metrics)."""
    root, run_dir, _, _ = scored_run
    ctx = synthetic_context(run_dir, str(root / "onepass"), segment=SegmentConfig())
    return root / "onepass", infer_stage.run(ctx).metrics


def _rows(folder) -> list:
    return pq.read_table(str(folder)).to_pylist()


def test_metrics_equal_hand_counts_from_the_written_predictions(staged):
    folder, stage_metrics = staged
    for population in POPULATIONS:
        report = json.loads((folder / f"{population}.json").read_text())
        labels = report["model"]["classes"]
        for split in ("test", "current"):
            rows = [r for r in _rows(folder / "predictions" / split) if r["population"] == population]
            got = report["splits"][split]
            # confusion counts, by hand: rows = actual, columns = the written `predicted`
            pairs = Counter((r["actual"], r["predicted"]) for r in rows)
            assert got["confusion"]["matrix"] == [[pairs[(a, p)] for p in labels] for a in labels]
            assert got["rows"] == len(rows)
            assert got["accuracy"] == pytest.approx(sum(r["actual"] == r["predicted"] for r in rows) / len(rows))
            loss = sum(-math.log(min(1.0, max(1e-15, r[f"prob_{r['actual']}"]))) for r in rows) / len(rows)
            assert got["log_loss"] == pytest.approx(loss, rel=1e-12)
            for group in ("estrato", "cluster"):
                sizes = Counter(str(r[group]) for r in rows)
                right = Counter(str(r[group]) for r in rows if r["actual"] == r["predicted"])
                assert {v: g["rows"] for v, g in got["by"][group].items()} == dict(sizes)
                for value, g in got["by"][group].items():
                    assert g["accuracy"] == pytest.approx(right[value] / sizes[value])
            assert stage_metrics[f"{population}/{split}/accuracy"] == got["accuracy"]
    assert stage_metrics["current/rows"] == len(_rows(folder / "predictions" / "current")) == 300


def test_prediction_files_keep_their_columns(staged):
    folder, _ = staged
    schema = pq.read_schema(sorted((folder / "predictions" / "test").glob("*.parquet"))[0])
    assert schema.names[:6] == ["customer_id", "population", "estrato", "cluster", "predicted", "actual"]
    assert [str(schema.field(n).type) for n in schema.names[:6]] == ["int64", "string", "int8", "int16", "string",
                                                                     "string"]
    assert all(n.startswith("prob_") and str(schema.field(n).type) == "float" for n in schema.names[6:])


def test_prediction_drift_as_the_drift_contract_states_it(staged):
    """PSI on the test split's exact quantiles (numpy), bins right-closed; KS D within the reported bound of
    scipy's exact statistic; p-value as ks_2samp(method="asymp") from the reported D."""
    folder, stage_metrics = staged
    cfg = DriftConfig()
    for population in POPULATIONS:
        report = json.loads((folder / f"{population}.json").read_text())
        drift = report["prediction_drift"]
        assert drift["available"] and drift["severity"] in ("NONE", "LOW", "MODERATE", "HIGH")
        assert stage_metrics[f"{population}/prediction_drift_psi_max"] == drift["psi_max"]
        ref = pd.read_parquet(folder / "predictions" / "test").query("population == @population")
        cur = pd.read_parquet(folder / "predictions" / "current").query("population == @population")
        assert [f["name"] for f in drift["features"]] == [f"prob_{c}" for c in report["model"]["classes"]]
        for feature in drift["features"]:
            r = ref[feature["name"]].to_numpy(np.float64)
            c = cur[feature["name"]].to_numpy(np.float64)
            edges = np.unique(np.quantile(r, np.arange(1, cfg.psi_bins) / cfg.psi_bins))
            assert feature["bins"]["edges"] == edges.tolist()
            counts = [np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) for x in (r, c)]
            # then the -inf, +inf and missing bins: probabilities are finite and never missing
            assert feature["bins"]["reference"] == counts[0].tolist() + [0, 0, 0]
            assert feature["bins"]["current"] == counts[1].tolist() + [0, 0, 0]
            p_r, p_c = (np.where(k == 0, cfg.psi_epsilon, k / k.sum()) for k in counts)
            assert feature["psi"] == pytest.approx(float(np.sum((p_c - p_r) * np.log(p_c / p_r))), rel=1e-12)
            exact = ks_2samp(r, c, method="asymp")
            assert feature["statistic"] - 1e-12 <= exact.statistic <= feature["ks_upper"] + 1e-12
            assert feature["reference_rows"] == len(r) and feature["current_rows"] == len(c)
            for key in ("p_value", "p_value_adjusted", "severity", "effect_size", "ks_exact", "test"):
                assert key in feature


def _layout(source: str, target: str, rows_per_file: int, row_group: int) -> list:
    """The split re-written as files of `rows_per_file` rows in row groups of `row_group` rows."""
    table = pq.read_table(source)
    os.makedirs(target)
    for i, start in enumerate(range(0, table.num_rows, rows_per_file)):
        pq.write_table(table.slice(start, rows_per_file), os.path.join(target, f"part-{i:05d}.parquet"),
                       row_group_size=row_group)
    return sorted(os.path.join(target, f) for f in os.listdir(target))


def _one_pass(files, folders, out, columns, *, workers, min_rows, collect=False, drift=None, performance=None):
    bundles = [load_bundle(f) for f in folders]
    spec = onepass.PassSpec(folders=tuple(folders), labels={b.population: tuple(b.labels) for b in bundles},
                            id_column="customer_id", target_column="segment", out=out, collect=collect,
                            drift=drift or {}, performance=performance or {},
                            month_column="record_date" if performance else None)
    os.makedirs(out)
    units = execution.plan(files, columns, workers=workers, min_rows=min_rows)
    totals = execution.map_reduce(onepass.score_unit, units, onepass.merge, columns=columns, kwargs={"spec": spec})
    return units, totals


@pytest.mark.parametrize("layout", ["one file, one row group", "files of 70 rows, row groups of 16"])
def test_the_same_results_for_any_units_and_layout(scored_run, tmp_path, layout):
    _, run_dir, _, folders = scored_run
    folders = [folders[p] for p in POPULATIONS]
    bundles = [load_bundle(f) for f in folders]
    columns = input_columns(bundles, "customer_id", "segment")
    shape = (300, 300) if layout.startswith("one") else (70, 16)
    split = {s: _layout(os.path.join(run_dir, "features", s), str(tmp_path / s), *shape) for s in ("test", "current")}
    cfg = onepass.numeric_config(DriftConfig())

    results = []
    for workers, min_rows in ((1, 100_000), (3, 1), (7, 1)):  # one unit; a few; many, with row ranges
        name = f"{workers}-{min_rows}"
        units, test = _one_pass(split["test"], folders, str(tmp_path / name / "test"), columns, workers=workers,
                                min_rows=min_rows, collect=True)
        refs = {b.population: onepass.fit_reference(np.concatenate(test.probs[b.population]),
                                                    [f"prob_{c}" for c in b.labels], cfg) for b in bundles}
        calibrations = {b.population: estimate.calibrate(*estimate.labelled(test.probs[b.population],
                                                                            test.labels[b.population])[:2],
                                                         len(b.labels), 20) for b in bundles}
        _, current = _one_pass(split["current"], folders, str(tmp_path / name / "current"),
                               [*columns, "record_date"], workers=workers, min_rows=min_rows,
                               drift={p: onepass.counting_plan(r) for p, r in refs.items()},
                               performance=calibrations)
        predictions = pd.read_parquet(tmp_path / name / "current").sort_values("customer_id", ignore_index=True)
        results.append((len(units), test, current, refs, predictions))

    assert [r[0] for r in results][0] == 1 and results[-1][0] > results[1][0] > 1
    _, test0, current0, refs0, pred0 = results[0]
    for _, test, current, refs, predictions in results[1:]:
        pd.testing.assert_frame_equal(predictions, pred0)
        assert test.rows == test0.rows == 300 and current.rows == current0.rows == 300
        for totals, base in ((test, test0), (current, current0)):
            merged, expected = merge_metric_partials(totals.metrics), merge_metric_partials(base.metrics)
            for pop in POPULATIONS:
                assert merged[pop]["confusion"] == expected[pop]["confusion"]
                assert merged[pop]["groups"] == expected[pop]["groups"]
                assert merged[pop]["logloss_sum"] == pytest.approx(expected[pop]["logloss_sum"], rel=1e-12)
        for pop in POPULATIONS:
            a, b = report_block(refs[pop], current.drift[pop], cfg), report_block(refs0[pop], current0.drift[pop], cfg)
            assert a == b  # PSI, KS, counts, p-values: bit for bit
            # the performance estimate's partials: every count and fixed-point sum, exactly
            assert _counts(current.performance[pop]) == _counts(current0.performance[pop])
            assert current.performance[pop].overall.rows == int((pred0["population"] == pop).sum())


def _counts(window) -> dict:
    parts = {"all": window.overall, **{("month", k): p for k, p in window.chunks.items()},
             **{("segment", *k): p for k, p in window.segments.items()}}
    return {key: (p.rows, p.unseen, p.labelled, *(getattr(p, name).tolist() for name in
                                                  ("predicted", "expected", "second", "realized")))
            for key, p in parts.items()}


def test_models_are_loaded_once_per_process_and_reloaded_when_changed(scored_run, tmp_path):
    _, _, _, folders = scored_run
    import shutil

    folder = str(tmp_path / "domestic")
    shutil.copytree(folders["domestic"], folder)
    first = onepass.models([folder])
    assert onepass.models([folder]) is first
    stat = os.stat(os.path.join(folder, "model.ubj"))
    os.utime(os.path.join(folder, "model.ubj"), ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert onepass.models([folder]) is not first


def test_partials_of_an_empty_unit_merge_to_nothing():
    """A unit without a record of a population adds nothing for it (empty arrays, zero counts)."""
    merged = onepass.merge(None, {"rows": 0, "metrics": {}, "probs": {"domestic": np.empty((0, 3), np.float32)},
                                  "labels": {}, "segments": {}, "estimate_segments": {}, "drift": {},
                                  "performance": {}})
    assert merged.rows == 0 and merged.metrics == [] and np.concatenate(merged.probs["domestic"]).shape == (0, 3)
    assert M.merge([]) is None and pa.array(np.empty(0, np.float32)).type == pa.float32()
