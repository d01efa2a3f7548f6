"""Attribution end to end (issue 30): the joint tables counted in the drift pass are the hand/pandas crosstabs of
the data, identical on every layout, unit count and path (one pass over both sides, the reference in passes, a
saved reference summary, an in-memory frame); and every number of `attribution` is recomputed from
drift_report.json alone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kon_ray.drift.check import run_check
from kon_ray.drift.compare import compare
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.engine import fit_reference, summarise_current
from tests.chromium import dump_dom, needs_chromium
from tests.drift.test_attribution import oracle
from tests.drift.test_layouts import _write_layouts, units  # noqa: F401 (a fixture)

ROWS = 20_000  # the layouts of tests/drift/test_layouts.py
SEGMENTS = ["pop", "estrato"]
CFG = DriftConfig(ks_bins=64, sample_rows=1000, segment_columns=SEGMENTS)
KEYS = ("joint", "mix", "within", "mix_only_psi", "within_only_psi", "mix_share", "within_share")


def _frame(n: int, industrial: float, seed: int) -> pd.DataFrame:
    """Two populations with different usage; `industrial` is their share. Estrato 1..3 with missing values."""
    rng = np.random.default_rng(seed)
    pop = np.where(rng.random(n) < industrial, "industrial", "domestic")
    kwh = np.where(pop == "industrial", rng.normal(500, 50, n), rng.normal(100, 20, n))
    kwh[rng.random(n) < 0.02] = np.nan
    kwh[:3] = np.inf
    estrato = pd.array(rng.integers(1, 4, n), dtype="Int64")
    estrato[rng.random(n) < 0.05] = pd.NA
    tariff = np.where(pop == "industrial", rng.choice(["T1", "T2"], n), rng.choice(["T2", "T3"], n)).astype(object)
    tariff[rng.random(n) < 0.03] = None
    return pd.DataFrame({"pop": pop, "kwh": kwh, "estrato": estrato, "tariff": pd.Series(tariff, dtype="string")})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    ref, cur = _frame(ROWS, 0.2, 1), _frame(ROWS, 0.5, 2)  # mostly a mix change: industrial 20% -> 50%
    folder = tmp_path_factory.mktemp("attribution")
    return ref, cur, _write_layouts(ref, folder / "ref"), _write_layouts(cur, folder / "cur")


def _attributions(ref, cur, cfg=CFG) -> dict:
    summary = fit_reference(ref, cfg)
    return {f["name"]: f["attribution"] for f in compare(summary, summarise_current(summary, cur, cfg), cfg)}


def _crosstab(frame: pd.DataFrame, by: str, bins) -> dict:
    """{segment: {bin: count}} by pandas, missing segments as None."""
    seg = [None if pd.isna(v) else str(v) for v in frame[by]]
    out: dict = {}
    for s, b in zip(seg, bins):
        out.setdefault(s, {}).setdefault(b, 0)
        out[s][b] += 1
    return out


def _kwh_bins(values: pd.Series, edges) -> pd.Series:
    """Each value's bin label by pandas.cut (right-closed, open ends), then -inf, +inf, missing."""
    x = values.astype("float64")
    cut = pd.cut(x.where(np.isfinite(x)), bins=[-np.inf, *edges, np.inf], right=True, labels=False)
    label = cut.astype(object)
    label[x == -np.inf], label[x == np.inf], label[x.isna()] = "-inf", "+inf", "missing"
    return label


def test_the_joint_tables_are_the_crosstabs_and_every_number_replays_from_the_report(tmp_path, data,
                                                                                  ray_session):
    ref, cur, ref_paths, cur_paths = data
    report = run_check(CFG, cur_paths["files"], str(tmp_path / "out"), reference=ref_paths["files"])
    saved = json.loads((tmp_path / "out" / "drift_report.json").read_text())
    assert saved["features"] == json.loads(json.dumps(report["features"]))
    by_name = {f["name"]: f for f in saved["features"]}
    assert [a["by"] for a in by_name["kwh"]["attribution"]] == SEGMENTS
    assert [a["by"] for a in by_name["estrato"]["attribution"]] == ["pop"]  # never by itself
    # the counts, against pandas on the raw frames
    kwh = by_name["kwh"]
    edges = kwh["bins"]["edges"]
    labels = list(range(len(edges) + 1)) + ["-inf", "+inf", "missing"]
    for entry in kwh["attribution"]:
        table = entry["table"]
        for frame, side in ((ref, "reference"), (cur, "current")):
            want = _crosstab(frame, entry["by"], _kwh_bins(frame["kwh"], edges))
            got = {s: {labels[kwh["bins"]["labels"].index(b)]: n for b, n in zip(table["bins"], row) if n}
                   for s, row in zip(table["segments"], table[side])}
            assert got == {s: c for s, c in want.items()}, (entry["by"], side)
            # the joint table's column sums are the feature's own bin counts
            sums = dict(zip(table["bins"], np.sum(table[side], axis=0).tolist()))
            assert sums == {b: n for b, n in zip(kwh["bins"]["labels"], kwh["bins"][side]) if b in sums}
    tariff = next(a for a in by_name["tariff"]["attribution"] if a["by"] == "pop")
    want = _crosstab(ref, "pop", [None if pd.isna(v) else v for v in ref["tariff"]])
    assert {s: {b: n for b, n in zip(tariff["table"]["bins"], row) if n}
            for s, row in zip(tariff["table"]["segments"], tariff["table"]["reference"])} == want
    # every number again, from the report alone, by the oracle's loops
    for feature in saved["features"]:
        for entry in feature["attribution"]:
            table = entry["table"]
            want = oracle(table["reference"], table["current"], CFG.psi_epsilon)
            for key in KEYS:
                assert entry[key] == pytest.approx(want[key], abs=1e-12), (feature["name"], entry["by"], key)
            assert entry["mix_share"] + entry["within_share"] == pytest.approx(feature["psi"], abs=1e-12)
            assert entry["joint"] == pytest.approx(entry["mix"] + entry["within"], abs=1e-9)
            ranked = dict(zip(map(str, table["segments"]), want["within_s"]))
            assert [s["within"] for s in entry["segments"]] == pytest.approx(
                [ranked[str(s["value"])] for s in entry["segments"]], abs=1e-12)
            assert [s["within"] for s in entry["segments"]] == sorted((s["within"] for s in entry["segments"]),
                                                                       reverse=True)
            for s in entry["segments"]:
                i = table["segments"].index(s["value"])
                assert s["ref_share"] == pytest.approx(sum(table["reference"][i]) / np.sum(table["reference"]))
                assert s["cur_share"] == pytest.approx(sum(table["current"][i]) / np.sum(table["current"]))
    # the planted cause: industrial's share went 20% -> 50% and usage within each population did not change
    by_pop = kwh["attribution"][0]
    assert kwh["psi"] > 0.25 and by_pop["mix_share"] > 0.9 * kwh["psi"]
    by_estrato = kwh["attribution"][1]  # estrato says nothing about usage here: almost all of it is "within"
    assert by_estrato["within_share"] > 0.9 * kwh["psi"]
    assert None in by_estrato["table"]["segments"]  # missing estrato is a segment
    # a check against the saved reference summary gives the same attribution
    again = run_check(CFG, cur_paths["files"], str(tmp_path / "again"),
                      reference_summary=str(tmp_path / "out" / "reference_summary.json"))
    assert [f["attribution"] for f in again["features"]] == [f["attribution"] for f in report["features"]]


def test_every_layout_and_path_gives_the_same_attribution(ray_session, data, units):  # noqa: F811
    ref, cur, ref_paths, cur_paths = data
    expected = _attributions(ref, cur)  # the frames: one in-memory unit
    assert expected["kwh"][0]["joint"] > 0
    for one_read in (True, False):
        units(7, 500, one_read)
        for layout in ref_paths:
            assert _attributions(ref_paths[layout], cur_paths[layout]) == expected, (layout, one_read)


def test_a_summary_fitted_without_a_segment_column_says_so(tmp_path, data):
    ref, cur, _, _ = data
    summary = fit_reference(ref, DriftConfig(segment_columns=["pop"]))
    cfg = DriftConfig(segment_columns=["pop", "estrato"])
    got = {f["name"]: f["attribution"] for f in compare(summary, summarise_current(summary, cur, cfg), cfg)}
    assert got["kwh"][0]["by"] == "pop" and "joint" in got["kwh"][0]
    assert got["kwh"][1]["by"] == "estrato" and "refit" in got["kwh"][1]["reason"]


def _frames_report(ref, cur) -> dict:
    from kon_ray.drift.compare import summarise
    from kon_ray.drift.prediction import not_available
    from kon_ray.drift.report import build_report

    summary = fit_reference(ref, CFG)
    features = compare(summary, summarise_current(summary, cur, CFG), CFG)
    return build_report(features, summarise(features, CFG, not_available("test")), "ref", "cur",
                        {"reference": ROWS, "current": ROWS})


def test_the_summary_says_it_in_words(data):
    from kon_ray.drift.report import summary_text

    ref, cur, _, _ = data
    report = _frames_report(ref, cur)
    kwh = next(f for f in report["features"] if f["name"] == "kwh")
    by_pop = kwh["attribution"][0]
    text = summary_text(report)
    share = f"{by_pop['mix_share'] / kwh['psi']:.0%}"  # the planted cause: about all of it is the mix
    assert int(share.rstrip("%")) >= 90
    assert f"{share} of kwh's PSI {kwh['psi']:.3f} is the pop mix" in text
    top = by_pop["segments"][0]["value"]
    assert f"within segments, pop {top} moved most" in text
    # MLflow (pipeline and standalone log check.metrics): the two shares add up to psi/<feature>
    from kon_ray.drift.check import metrics

    logged = metrics(report)
    assert logged["drift_mix/kwh/pop"] == by_pop["mix_share"]
    assert logged["drift_mix/kwh/estrato"] + logged["drift_within/kwh/estrato"] == pytest.approx(logged["psi/kwh"],
                                                                                               abs=1e-12)


@needs_chromium
def test_the_attribution_chart_renders_in_headless_chromium(tmp_path, data):
    import re

    from kon_ray.drift.html import render

    ref, cur, _, _ = data
    report = _frames_report(ref, cur)
    page = tmp_path / "drift_report.html"
    page.write_text(render(report))
    dom = dump_dom(page, tmp_path / "profile")
    chart = re.search(r'<svg id="attribution-chart".*?</svg>', dom, re.S)
    assert chart, "the attribution chart is on the page"
    explained = [f for f in report["features"] if f["severity"] in ("HIGH", "MODERATE")][:5]
    bars = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', chart.group(0))
    assert len(bars) == 2 * sum(len(f["attribution"]) for f in explained)  # mix + within per feature and column
    assert 'id="attribution"' in dom and "moved most" in dom
