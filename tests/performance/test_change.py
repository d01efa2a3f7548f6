"""The change in estimated accuracy split into segment mix and within segments (kon_ray/performance/change.py):
hand-computed cases, and the standalone command on planted data where the answer is known exactly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kon_ray.performance.change import accuracy_change, sentence
from kon_ray.performance.config import PerformanceConfig
from kon_ray.performance.report import build, summary_text
from tests.performance.synthetic import draw, model, table, write


def test_a_pure_mix_change_by_hand():
    # A: 0.8 accurate, B: 0.6; the reference half and half (0.7), the current 20/80 (0.8*0.2 + 0.6*0.8 = 0.64)
    change = accuracy_change("s", {"A": (50, 0.8), "B": (50, 0.6)}, {"A": (20, 0.8), "B": (80, 0.6)})
    assert change["reference"] == pytest.approx(0.7) and change["current"] == pytest.approx(0.64)
    # mix = (0.2 - 0.5) * 0.8 + (0.8 - 0.5) * 0.6 = -0.06; within = 0
    assert change["mix"] == pytest.approx(-0.06) and change["within"] == 0.0
    assert change["change"] == pytest.approx(-0.06)


def test_a_pure_within_change_in_one_segment_by_hand():
    # same shares; B drops from 0.6 to 0.4: within = 0.5 * -0.2 = -0.1, all of it B's; mix 0
    change = accuracy_change("s", {"A": (50, 0.8), "B": (50, 0.6)}, {"A": (100, 0.8), "B": (100, 0.4)})
    assert change["mix"] == pytest.approx(0.0) and change["within"] == pytest.approx(-0.1)
    top = change["segments"][0]
    assert top["value"] == "B" and top["within"] == pytest.approx(-0.1) and top["mix"] == pytest.approx(0.0)
    assert sentence(change) == ("by s: estimated accuracy 0.700 -> 0.600 (-0.100): segment mix +0.000, within"
                                " segments -0.100; s B moved most within (-0.100)")


def test_both_at_once_and_a_new_segment_add_up_by_hand():
    # reference A 60 rows at 0.9, B 40 at 0.5 -> 0.74; current A 30 at 0.8, B 50 at 0.5, C (new) 20 at 0.3 -> 0.55
    change = accuracy_change("s", {"A": (60, 0.9), "B": (40, 0.5)},
                             {"A": (30, 0.8), "B": (50, 0.5), "C": (20, 0.3)})
    by = {s["value"]: s for s in change["segments"]}
    # A: mix (0.3 - 0.6) * 0.85 = -0.255, within 0.45 * -0.1 = -0.045; B: mix 0.1 * 0.5 = 0.05, within 0;
    # C: only current, taken as unchanged: mix 0.2 * 0.3 = 0.06, within 0
    assert by["A"]["mix"] == pytest.approx(-0.255) and by["A"]["within"] == pytest.approx(-0.045)
    assert by["B"]["mix"] == pytest.approx(0.05) and by["B"]["within"] == pytest.approx(0.0)
    assert by["C"]["mix"] == pytest.approx(0.06) and by["C"]["within"] == 0.0
    assert by["C"]["ref_accuracy"] is None and by["C"]["ref_share"] == 0.0
    assert change["reference"] == pytest.approx(0.74) and change["current"] == pytest.approx(0.55)
    assert change["mix"] + change["within"] == pytest.approx(-0.19, abs=1e-12)
    assert change["segments"][0]["value"] == "A"  # the largest within term first


def test_the_command_splits_a_planted_mix_change_exactly(tmp_path):
    """The current window is the reference's own rows, estrato 1 three times and estrato 2 once: each estrato's
    estimated accuracy is the same on both sides, so the whole change is the mix, and within is zero."""
    rng = np.random.default_rng(5)
    n = 4000
    x = np.where(np.arange(n) % 2 == 0, rng.normal(0, 3.0, n), rng.normal(0, 0.3, n))  # estrato 1 confident
    probs = model(x)
    ref = table(probs, draw(probs, rng), rng)
    ref = ref.set_column(ref.schema.get_field_index("estrato"), "estrato",
                         pa.array(np.where(np.arange(n) % 2 == 0, "1", "2")))
    one, two = ref.filter(pa.array(np.arange(n) % 2 == 0)), ref.filter(pa.array(np.arange(n) % 2 == 1))
    cur = pa.concat_tables([one, one, one, two])
    write(tmp_path / "ref.parquet", ref)
    write(tmp_path / "cur.parquet", cur)
    cfg = PerformanceConfig(label_column="label", probability_prefix="prob_", segment_columns=["estrato"])
    report = build(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"), cfg)
    (change,) = report["accuracy_change"]
    assert change["reference"] == pytest.approx(report["reference_estimate"]["estimated"]["accuracy"], abs=1e-12)
    assert change["current"] == pytest.approx(report["overall"]["estimated"]["accuracy"], abs=1e-12)
    assert change["within"] == pytest.approx(0.0, abs=1e-12)
    assert change["mix"] == pytest.approx(change["change"], abs=1e-12) and change["change"] > 0.05
    by = {s["value"]: s for s in change["segments"]}
    assert by["1"]["ref_share"] == 0.5 and by["1"]["cur_share"] == 0.75
    assert "segment mix" in summary_text(report)


def test_a_segment_column_the_reference_lacks_has_no_split(tmp_path):
    rng = np.random.default_rng(6)
    probs = model(rng.normal(0, 2.0, 600))
    ref = table(probs, draw(probs, rng), rng)
    write(tmp_path / "ref.parquet", ref.drop_columns(["estrato"]))
    write(tmp_path / "cur.parquet", ref)
    cfg = PerformanceConfig(label_column="label", probability_prefix="prob_", segment_columns=["estrato"])
    report = build(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"), cfg)
    assert report["accuracy_change"] == [] and [s["value"] for s in report["segments"]] == ["1", "2", "3"]
