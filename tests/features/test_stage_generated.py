"""PreprocessSplit on generated POLA data with the real conf/dataset/POLA.yaml (slow: generator + Ray)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kon_ray import storage
from kon_ray.config import load_config, to_plain
from kon_ray.context import RunContext
from kon_ray.pipeline import run_pipeline
from kon_ray.synth.config import SynthConfig
from tests.conftest import compose_config


@pytest.mark.slow
def test_generated_pola_balanced_500_200(ray_session, tmp_path: Path):
    from kon_ray.synth.writer import generate

    cfg = compose_config(
        ["+dataset=POLA", "stages=[ingest,preprocess]", f"dataset.path={tmp_path / 'POLA'}", "tracking=off",
         "split.train_per_class=500", "split.test_per_class=200"],
        tmp_path,
    )
    config = load_config(cfg)
    generate(config.dataset, SynthConfig(rows=6000), str(tmp_path / "POLA"))
    ctx = RunContext(config=config, plain=to_plain(cfg), run_dir=config.output_dir)
    metrics = run_pipeline(ctx)["preprocess"]
    assert metrics["feature_count"] == 235
    summary = storage.read_json(storage.join(ctx.stage_dir("preprocess"), "split_summary.json"))
    plan = summary["plan"]
    for name, cap in (("train", 500), ("test", 200)):
        per_class = summary["rows_per_class"][name]
        assert set(per_class) <= set(plan["classes"])
        assert all(n <= cap for n in per_class.values())
    train = pd.read_parquet(Path(ctx.stage_dir("preprocess")) / "train")
    assert set(train["population"]) == {"domestic", "industrial"}
    assert len(train.columns) == 235 + 9  # 8 passthrough columns + population
