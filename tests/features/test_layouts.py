"""PreprocessSplit does not depend on how the data was written: the same rows as one file with one row group (the
most common layout, pyarrow's default), one file of many row groups, and many small files of mixed sizes give the
same splits (rows sorted by id) and the same feature_state.json, byte for byte, on Ray; and the stage's fit (per
column group, the sample derived on the driver) equals the one-pass fit of state.py on the whole frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray import execution
from kon_ray.features import split as s
from kon_ray.features import stage
from kon_ray.features import state as st
from kon_ray.features.derive import parse_dates
from kon_ray.features.spec import build_spec
from kon_ray.pipeline import run_pipeline
from tests.features.data import dataset_config, dataset_plain, raw_frame
from tests.features.test_stage import TYPES, make_ctx

ROWS = 3000


def _table(frame: pd.DataFrame) -> pa.Table:
    declared = dataset_plain()["columns"]
    schema = pa.schema([(c, TYPES[t]) for c, t in declared.items()])
    return pa.Table.from_pandas(frame[list(declared)], schema=schema, preserve_index=False)


def write_layout(folder: Path, frame: pd.DataFrame, layout: str) -> Path:
    folder.mkdir(parents=True)
    table = _table(frame)
    if layout == "one-row-group":
        pq.write_table(table, folder / "part-00000.parquet")
    elif layout == "many-row-groups":
        pq.write_table(table, folder / "part-00000.parquet", row_group_size=211)
    else:  # many small files of mixed sizes, some of several row groups, one empty
        bounds = [0, 7, 400, 400, 1333, 1350, 2200, ROWS]
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            pq.write_table(table.slice(lo, hi - lo), folder / f"part-{i:05d}.parquet", row_group_size=97 * (i + 1))
    return folder


LAYOUTS = ["one-row-group", "many-row-groups", "many-files"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return raw_frame(ROWS, seed=23)


def _outputs(folder: Path) -> dict:
    found = {}
    for name in ("train", "test", "current"):
        table = pq.read_table(folder / name)
        found[name] = table.to_pandas().sort_values("customer_id").reset_index(drop=True)
    for name in ("feature_state.json", "split_summary.json"):
        found[name] = (folder / name).read_bytes()
    return found


def test_the_same_data_in_any_layout_gives_the_same_splits_and_state(ray_session, frame, tmp_path, monkeypatch):
    # units of a few hundred rows: the row groups are cut into row ranges and the fit splits its columns
    monkeypatch.setattr(stage, "UNIT_MIN_ROWS", 256)
    results = {}
    for layout in LAYOUTS:
        root = tmp_path / layout
        write_layout(root / "data", frame, layout)
        ctx = make_ctx(root, "split.current_months=3", "split.train_per_class=300",
                       "dataset.features.fit_sample_rows=700")
        run_pipeline(ctx)
        results[layout] = _outputs(Path(ctx.stage_dir("preprocess")))
    first = results[LAYOUTS[0]]
    fit = json.loads(first["feature_state.json"])["fit"]
    assert fit["sample_rows"] < fit["train_rows"]
    for layout in LAYOUTS[1:]:
        for name, expected in first.items():
            if isinstance(expected, pd.DataFrame):
                assert len(expected) > 0
                pd.testing.assert_frame_equal(results[layout][name], expected, check_exact=True, obj=f"{layout} {name}")
            else:
                assert results[layout][name] == expected, f"{layout} {name}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sample_rows", [10**6, 700])
def test_the_stage_fit_equals_the_one_pass_fit(frame, tmp_path, monkeypatch, layout, sample_rows):
    """In this process (no Ray): the per-column-group fit gives state.py's one-pass state exactly."""
    spec = build_spec(dataset_config(fit_sample_rows=sample_rows))
    files = [str(p) for p in sorted(write_layout(tmp_path / "data", frame, layout).glob("*.parquet"))]
    ids, month_idx, targets = stage.read_keys(files, spec)
    plan = s.make_plan(ids, month_idx, targets, seed=5, current_months=3, reference_months=None, test_fraction=0.2,
                       train_per_class=None, test_per_class=None)
    roles, hashes = stage.row_roles(ids, month_idx, targets, plan, spec)
    train_rows = int(np.count_nonzero(roles & stage.TRAIN_PORTION))
    threshold = st.sample_threshold(train_rows, spec.fit_sample_rows)
    groups = execution.row_groups(files)
    units = execution.plan(files, st.fit_columns(spec), per_column=True, groups=groups, min_rows=128)
    if layout == "one-row-group":
        assert len({u.columns for u in units}) > 1  # one row group: the fit's columns are split instead
    monkeypatch.setattr(stage, "UNIT_MIN_ROWS", 128)
    read = []
    real_read_unit = execution.read_unit

    def recording_read_unit(unit, columns=None):
        table = real_read_unit(unit, columns)
        read.extend(table.column_names)
        return table

    monkeypatch.setattr(execution, "read_unit", recording_read_unit)
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the units run here even if a test started Ray
    got = stage.fit(files, groups, spec, roles, hashes, train_rows, threshold)  # in this process (no Ray here)
    # the fit reads only what it needs: no id, no target, no passthrough-only column
    assert read and set(read) <= set(st.fit_columns(spec))
    assert not {"customer_id", "segment"} & set(read)
    whole = frame.copy()
    expected = st.finalize(st.merge([st.partial(whole, spec, plan, threshold)], spec), spec, threshold)
    assert json.dumps(got) == json.dumps(expected)
    assert np.array_equal(s.month_index(parse_dates(frame["record_date"])), month_idx, equal_nan=True)
