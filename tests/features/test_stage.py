"""The PreprocessSplit stage end to end on a tiny dataset, through the pipeline's RunContext and shared Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import open_dict

from kon_ray import storage
from kon_ray.config import load_config, to_plain
from kon_ray.context import RunContext
from kon_ray.errors import DataError
from kon_ray.features.spec import build_spec
from kon_ray.features.stage import check_columns, feature_columns, load_feature_state, transform_batch
from kon_ray.pipeline import run_pipeline
from tests.conftest import compose_config
from tests.features.data import as_config, dataset_plain, raw_frame

TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_(), "date": pa.date32()}


def write_parts(folder: Path, frame: pd.DataFrame, declared: dict, parts: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(c, TYPES[t]) for c, t in declared.items()])
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        table = pa.Table.from_pandas(frame.iloc[chunk][list(declared)], schema=schema, preserve_index=False)
        pq.write_table(table, folder / f"part-{i:05d}.parquet", row_group_size=200)


def make_ctx(tmp_path: Path, *overrides: str, dataset: dict | None = None) -> RunContext:
    dataset = dataset or dataset_plain()
    cfg = compose_config(["+dataset=POLA", "stages=[ingest,preprocess]", *overrides], tmp_path)
    with open_dict(cfg):
        cfg.dataset.columns = dataset["columns"]
        cfg.dataset.industrial_values = dataset["industrial_values"]
        for group in ("features", "segment"):
            for key, value in dataset[group].items():
                cfg.dataset[group][key] = value
        cfg.dataset.path = str(tmp_path / "data")
    config = load_config(cfg)
    return RunContext(config=config, plain=to_plain(cfg), run_dir=config.output_dir)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_parts(root / "data", raw_frame(1200, seed=3), dataset_plain()["columns"])
    return root


def test_stage_writes_three_splits_state_and_summary(ray_session, tiny, tmp_path):
    (tmp_path / "data").symlink_to(tiny / "data")
    ctx = make_ctx(tmp_path, "split.current_months=3", "split.train_per_class=50", "split.test_per_class=20")
    metrics = run_pipeline(ctx)["preprocess"]
    out = Path(ctx.stage_dir("preprocess"))
    summary = storage.read_json(str(out / "split_summary.json"))
    state = load_feature_state(str(out))
    names = feature_columns(state)
    assert metrics["feature_count"] == len(names) == summary["feature_count"]
    # balanced sampling: exactly 50 train / 20 test rows per class (every class has more than that)
    assert summary["rows_per_class"]["train"] == {c: 50 for c in ["alto", "bajo", "moroso", "regular"]}
    assert summary["rows_per_class"]["test"] == {c: 20 for c in ["alto", "bajo", "moroso", "regular"]}
    frames = {s: pd.read_parquet(out / s) for s in ("train", "test", "current")}
    assert {s: len(f) for s, f in frames.items()} == summary["rows"]
    train = frames["train"]
    assert list(train.columns[:7]) == [
        "customer_id", "record_date", "segment", "avaluo", "kwh_m12", "balance", "population"
    ]
    assert list(train.columns[7:]) == names
    assert train["cat_region"].dtype == np.int32 and train["kwh_lag01"].dtype == np.float32
    assert set(train["population"]) <= {"domestic", "industrial"}
    # the current window is the last 3 calendar months (2025-10..12), the rest is reference
    current_months = pd.to_datetime(frames["current"]["record_date"]).dt.to_period("M").astype(str)
    assert set(current_months) == {"2025-10", "2025-11", "2025-12"}
    assert pd.to_datetime(train["record_date"]).max() < pd.Timestamp("2025-10-01")
    # splits are disjoint
    ids = [set(f["customer_id"]) for f in frames.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    # the Ray path and the plain pandas transform agree on the same rows
    raw = raw_frame(1200, seed=3).set_index("customer_id").loc[train["customer_id"]].reset_index()
    again = transform_batch(raw, state, ctx.config.dataset)
    np.testing.assert_array_equal(again[names].to_numpy(), train[names].to_numpy())


def test_a_feature_column_missing_from_the_files_is_a_data_error_before_ray(tmp_path):
    plain = dataset_plain()
    write_parts(tmp_path / "data", raw_frame(20), plain["columns"], parts=1)
    plain["features"]["numeric"] = ["balance", "meter_age"]
    plain["columns"] = {}  # undeclared schema: only the files can tell
    with pytest.raises(DataError, match="'meter_age' is missing"):
        check_columns(str(tmp_path / "data" / "part-00000.parquet"), build_spec(as_config(plain)))


def test_no_reference_rows_is_a_data_error_before_ray_work(tiny, tmp_path):
    (tmp_path / "data").symlink_to(tiny / "data")
    ctx = make_ctx(tmp_path, "split.current_months=12")
    with pytest.raises(DataError, match="current_months"):
        run_pipeline(ctx)


def test_a_kon_error_inside_a_ray_task_surfaces_as_itself():
    from kon_ray.execution import user_errors

    class TaskError(Exception):  # the shape of ray.exceptions.RayTaskError: the original in .cause
        def __init__(self, cause):
            super().__init__("Traceback ... (pid=123) ...")
            self.cause = cause

    with pytest.raises(DataError, match="^bad column$"):
        with user_errors():
            try:
                raise DataError("bad column")
            except DataError as inner:
                raise TaskError(inner) from None
    with pytest.raises(TaskError):  # anything else is left alone
        with user_errors():
            raise TaskError(ValueError("a bug"))


@pytest.mark.slow  # two preprocess + drift runs (~25 s on 2 shared cores)
def test_drift_compares_the_whole_reference_window_whatever_the_training_sample(ray_session, tiny, tmp_path):
    """Balanced sampling selects what training reads: train + test + reference_rest hold every labelled reference
    row either way, and DriftCheck's report is the same with sampling on and off (attributed by population only:
    the estrato and cluster rules are fitted on the training sample, so those splits differ with it, by design)."""
    import json

    reports, rows = {}, {}
    for name, sampling in (("off", []), ("on", ["split.train_per_class=50", "split.test_per_class=20"])):
        folder = tmp_path / name
        (folder / "data").parent.mkdir()
        (folder / "data").symlink_to(tiny / "data")
        ctx = make_ctx(folder, "split.current_months=3", "stages=[ingest,preprocess,segment,drift]",
                       "tracking.enabled=false", "drift.segment_columns=[population]", *sampling)
        run_pipeline(ctx)
        out = Path(ctx.stage_dir("preprocess"))
        rows[name] = {split: len(pd.read_parquet(out / split)) if list((out / split).glob("*.parquet")) else 0
                      for split in ("train", "test", "reference_rest")}
        reports[name] = json.loads((Path(ctx.stage_dir("drift")) / "drift_report.json").read_text())
    assert rows["on"]["train"] == 4 * 50 and rows["on"]["test"] == 4 * 20  # the sample is what training reads
    assert rows["off"]["reference_rest"] == 0
    assert sum(rows["on"].values()) == sum(rows["off"].values())  # ...and nothing of the window is lost to drift
    assert reports["on"]["rows"] == reports["off"]["rows"]
    assert reports["on"]["rows"]["reference"] == sum(rows["off"].values())
    assert reports["on"]["features"] == reports["off"]["features"]
