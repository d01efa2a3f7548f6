"""The pipeline's publishing and reuse contract, with stand-in stages (no Ray): a failed stage publishes nothing,
a re-run reuses exactly the stages whose keys match, and a changed config redoes exactly the stages it affects."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray import manifest, pipeline
from kon_ray.config import STAGE_ORDER, load_config, to_plain
from kon_ray.context import RunContext
from kon_ray.errors import DriftGateError
from kon_ray.stages import GateVerdict, StageResult
from tests.conftest import compose_config


@pytest.fixture
def fake_stages(monkeypatch):
    """Each stand-in stage writes one file and counts its calls; `fail` makes a stage raise mid-way, or (a
    GateVerdict) return its gate's verdict."""
    calls = {stage: 0 for stage in STAGE_ORDER}
    fail: dict[str, BaseException | GateVerdict] = {}

    def make(stage):
        def run(ctx: RunContext):
            calls[stage] += 1
            Path(ctx.output_dir).mkdir(parents=True, exist_ok=True)
            Path(ctx.out("out.txt")).write_text(f"{stage} {ctx.stage_keys[stage]}")
            if isinstance(fail.get(stage), GateVerdict):
                return StageResult({"rows": 3}, fail[stage])
            if stage in fail:
                raise fail[stage]
            return {"rows": 3}

        return run

    monkeypatch.setattr(pipeline, "stage_function", lambda stage: make(stage))
    return calls, fail


def _ctx(tmp_path: Path, run: str, *overrides: str) -> RunContext:
    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        pq.write_table(pa.table({"x": [1, 2, 3]}), data / "part-0.parquet")
    cfg = compose_config(["+dataset=POLA", f"dataset.path={data}", *overrides], tmp_path)
    cfg.output_dir = str(tmp_path / "runs" / run)
    config = load_config(cfg)
    return RunContext(config=config, plain=to_plain(cfg), run_dir=config.output_dir)


def test_a_run_publishes_every_stage_with_a_manifest_and_links_it(tmp_path, fake_stages):
    calls, _ = fake_stages
    ctx = _ctx(tmp_path, "a")
    results = pipeline.run_pipeline(ctx)
    assert list(results) == list(STAGE_ORDER) and all(c == 1 for c in calls.values())
    features = tmp_path / "runs" / "a" / "features"
    assert features.is_symlink() and (features / "out.txt").read_text().startswith("preprocess ")
    written = json.loads((features / "_manifest.json").read_text())
    assert written["stage"] == "preprocess" and written["metrics"] == {"rows": 3}
    assert not list((tmp_path / "runs" / ".cache").glob("*._tmp-*"))


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, fake_stages):
    calls, fail = fake_stages
    fail["segment"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(_ctx(tmp_path, "a"))
    cache = tmp_path / "runs" / ".cache"
    assert not list(cache.glob("segment-*")), "the interrupted stage left a folder behind"
    del fail["segment"]
    results = pipeline.run_pipeline(_ctx(tmp_path, "b"))
    assert calls == {"ingest": 1, "preprocess": 1, "drift": 1, "segment": 2, "train": 1, "infer": 1}
    assert results["preprocess"]["cached"] == 1 and "cached" not in results["train"]


def test_a_changed_model_redoes_only_train_and_infer(tmp_path, fake_stages):
    calls, _ = fake_stages
    pipeline.run_pipeline(_ctx(tmp_path, "a"))
    pipeline.run_pipeline(_ctx(tmp_path, "b", "model.max_depth=3"))
    assert calls == {"ingest": 1, "preprocess": 1, "drift": 1, "segment": 1, "train": 2, "infer": 2}


def test_a_changed_split_redoes_everything_downstream_of_preprocess(tmp_path, fake_stages):
    calls, _ = fake_stages
    pipeline.run_pipeline(_ctx(tmp_path, "a"))
    pipeline.run_pipeline(_ctx(tmp_path, "b", "split.test_fraction=0.3"))
    assert calls == {"ingest": 1, "preprocess": 2, "drift": 2, "segment": 2, "train": 2, "infer": 2}


def test_changed_input_data_redoes_everything(tmp_path, fake_stages):
    calls, _ = fake_stages
    pipeline.run_pipeline(_ctx(tmp_path, "a"))
    pq.write_table(pa.table({"x": [1, 2, 3, 4]}), tmp_path / "data" / "part-1.parquet")
    pipeline.run_pipeline(_ctx(tmp_path, "b"))
    assert all(count == 2 for count in calls.values())


def test_reuse_false_recomputes(tmp_path, fake_stages):
    calls, _ = fake_stages
    pipeline.run_pipeline(_ctx(tmp_path, "a"))
    pipeline.run_pipeline(_ctx(tmp_path, "b", "reuse=false"))
    assert all(count == 2 for count in calls.values())


def test_the_drift_gate_publishes_its_report_but_is_never_reused(tmp_path, fake_stages):
    calls, fail = fake_stages
    fail["drift"] = GateVerdict("drift", "5 of 10 features drifted")
    with pytest.raises(DriftGateError, match="^5 of 10 features drifted$") as stopped:
        pipeline.run_pipeline(_ctx(tmp_path, "a"))
    assert stopped.value.exit_code == 4
    report = tmp_path / "runs" / "a" / "drift" / "out.txt"
    assert report.exists() and not (report.parent / "_manifest.json").exists()
    with pytest.raises(DriftGateError):
        pipeline.run_pipeline(_ctx(tmp_path, "b"))
    assert calls["drift"] == 2 and calls["segment"] == 1 and calls["train"] == 0  # segment before it, reused


def test_stage_keys_depend_only_on_their_config_sections(tmp_path):
    base = manifest.stage_keys(_ctx(tmp_path, "a").config, "fp")
    deeper = manifest.stage_keys(_ctx(tmp_path, "b", "model.max_depth=8").config, "fp")
    assert [s for s in base if base[s] != deeper[s]] == ["train", "infer"]
    binned = manifest.stage_keys(_ctx(tmp_path, "c", "drift.psi_bins=20").config, "fp")
    assert [s for s in base if base[s] != binned[s]] == ["drift", "infer"]
    estratos = manifest.stage_keys(_ctx(tmp_path, "d", "dataset.segment.clusters=3").config, "fp")
    assert [s for s in base if base[s] != estratos[s]] == ["preprocess", "segment", "drift", "train", "infer"]
    assert manifest.stage_keys(_ctx(tmp_path, "e", "tracking=off").config, "fp") == base  # not an input of any
    assert all(base[s] != v for s, v in manifest.stage_keys(_ctx(tmp_path, "a").config, "other").items())


def test_ray_starts_only_before_the_first_stage_that_runs_on_it(tmp_path, fake_stages):
    calls, fail = fake_stages
    started = []
    fail["ingest"] = ValueError("bad data")
    with pytest.raises(ValueError):
        pipeline.run_pipeline(_ctx(tmp_path, "a"), start_ray=lambda: started.append(len(started)))
    assert started == [], "bad input found by ingest must not pay for starting Ray"
    del fail["ingest"]
    pipeline.run_pipeline(_ctx(tmp_path, "b"), start_ray=lambda: started.append(calls["preprocess"]))
    assert started == [0], "started once, before preprocess ran"
    pipeline.run_pipeline(_ctx(tmp_path, "c"), start_ray=lambda: started.append("again"))
    assert started == [0], "a run whose stages are all reused needs no Ray"


# ------------------------------------------------------------------ the stage registry (kon_ray/stages.py)
def test_a_stage_may_read_only_the_stages_it_declares(tmp_path, fake_stages):
    pipeline.run_pipeline(_ctx(tmp_path, "a"))
    ctx = pipeline.plan(_ctx(tmp_path, "a"))
    segment = RunContext(config=ctx.config, plain=ctx.plain, run_dir=ctx.run_dir, stage_paths=ctx.stage_paths,
                         stage_keys=ctx.stage_keys, stage="segment")
    assert segment.input_dir("preprocess") == ctx.stage_paths["preprocess"]  # declared: segment reads features
    with pytest.raises(RuntimeError, match="stage 'segment' reads 'train', which kon_ray/stages.py does not declare"):
        segment.input_dir("train")


def test_key_material_changes_that_stage_and_the_stages_after_it_only(tmp_path):
    ctx = _ctx(tmp_path, "a")
    before = manifest.stage_keys(ctx.config, "fingerprint")
    after = manifest.stage_keys(ctx.config, "fingerprint", {"drift": {"model": "POLA-domestic/3"}})
    changed = sorted(stage for stage in STAGE_ORDER if before[stage] != after[stage])
    assert changed == ["drift", "infer"]  # infer reads drift; segment and train do not
    assert manifest.stage_keys(ctx.config, "fingerprint", {"drift": None}) == before


def test_the_registry_orders_every_stage_after_its_inputs_and_names_distinct_folders():
    from kon_ray.stages import STAGES

    seen: list[str] = []
    for entry in STAGES:
        assert set(entry.inputs) <= set(seen), entry.name
        seen.append(entry.name)
    assert len({entry.folder for entry in STAGES}) == len(STAGES)
    assert [entry.name for entry in STAGES if not entry.needs_ray] == ["ingest"]
