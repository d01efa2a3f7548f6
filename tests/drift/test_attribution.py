"""The exact decomposition of drift into segment mix and within-segment change (issue 30): an independent oracle of
the issue's formulas (plain Python loops over the cells, never kon_ray.drift.attribution) on hand-made tables, and
planted cases whose answers are known before any code runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kon_ray.drift.attribution import attribute, decompose

EPS = 1e-4


def oracle(n_ref, n_cur, eps=EPS) -> dict:
    """The issue's formulas cell by cell: floored joint cells, shares and conditionals from them, the chain-rule
    terms, the counterfactual marginals A and B, the Shapley shares over the marginal PSI (the feature's own)."""
    S, B = len(n_ref), len(n_ref[0])
    N, M = sum(map(sum, n_ref)), sum(map(sum, n_cur))
    p = [[(n_ref[s][b] / N) or eps for b in range(B)] for s in range(S)]
    q = [[(n_cur[s][b] / M) or eps for b in range(B)] for s in range(S)]
    ps = [sum(row) for row in p]
    qs = [sum(row) for row in q]
    joint = sum((q[s][b] - p[s][b]) * math.log(q[s][b] / p[s][b]) for s in range(S) for b in range(B))
    mix = sum((qs[s] - ps[s]) * math.log(qs[s] / ps[s]) for s in range(S))
    within_s = []
    for s in range(S):
        kl_pq = sum(p[s][b] / ps[s] * math.log((p[s][b] / ps[s]) / (q[s][b] / qs[s])) for b in range(B))
        kl_qp = sum(q[s][b] / qs[s] * math.log((q[s][b] / qs[s]) / (p[s][b] / ps[s])) for b in range(B))
        within_s.append(ps[s] * kl_pq + qs[s] * kl_qp)
    P = [sum(p[s][b] for s in range(S)) for b in range(B)]
    A = [sum(qs[s] * p[s][b] / ps[s] for s in range(S)) for b in range(B)]
    Bb = [sum(ps[s] * q[s][b] / qs[s] for s in range(S)) for b in range(B)]

    def psi(x, y):
        return sum((y[i] - x[i]) * math.log(y[i] / x[i]) for i in range(len(x)))

    # the feature's own PSI: its marginal counts, each side's proportions floored as PSI floors them
    pm = [(sum(n_ref[s][b] for s in range(S)) / N) or eps for b in range(B)]
    qm = [(sum(n_cur[s][b] for s in range(S)) / M) or eps for b in range(B)]
    own = psi(pm, qm)
    pa, pb = psi(P, A), psi(P, Bb)
    return {"joint": joint, "mix": mix, "within": sum(within_s), "within_s": within_s, "mix_only_psi": pa,
            "within_only_psi": pb, "mix_share": (pa + own - pb) / 2, "within_share": (pb + own - pa) / 2, "psi": own}


KEYS = ("joint", "mix", "within", "mix_only_psi", "within_only_psi", "mix_share", "within_share", "psi")

HAND = [
    # two segments, three bins, every cell filled
    ([[30, 10, 10], [5, 20, 25]], [[10, 5, 5], [20, 30, 30]]),
    # empty cells on both sides (floored), three segments
    ([[40, 0, 10], [0, 25, 5], [3, 3, 14]], [[0, 12, 30], [10, 0, 20], [6, 1, 21]]),
    # a segment with no reference rows (new in the current data)
    ([[50, 50], [0, 0]], [[30, 40], [20, 10]]),
]


@pytest.mark.parametrize("n_ref,n_cur", HAND)
def test_the_decomposition_matches_the_oracle_and_its_identities_hold(n_ref, n_cur):
    got = decompose(np.array(n_ref), np.array(n_cur), EPS)
    want = oracle(n_ref, n_cur)
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["within_s"] == pytest.approx(want["within_s"], abs=1e-12)
    assert got["joint"] == pytest.approx(got["mix"] + got["within"], abs=1e-9)  # chain rule of KL
    assert got["mix_share"] + got["within_share"] == pytest.approx(got["psi"], abs=1e-12)  # Shapley: adds up


def test_the_hand_checked_two_by_two_case():
    """Worked by hand: reference segments x, y with 50 rows each, bins (lo, hi) = x: (25, 25), y: (25, 25);
    current the same conditionals but x 80 / y 20 rows. The behaviour is unchanged, only the mix moved:
    mix = (0.8 - 0.5) ln(0.8/0.5) + (0.2 - 0.5) ln(0.2/0.5) = 0.3 ln 1.6 + 0.3 ln 2.5 = 0.3 ln 4; within = 0, and
    the marginal is still (0.5, 0.5) on both sides, so the feature's PSI is 0 and so are both its shares."""
    got = decompose(np.array([[25, 25], [25, 25]]), np.array([[40, 40], [10, 10]]), EPS)
    assert got["mix"] == pytest.approx(0.3 * math.log(4.0), abs=1e-15)
    assert got["within"] == pytest.approx(0.0, abs=1e-15) and got["joint"] == pytest.approx(got["mix"], abs=1e-15)
    assert got["psi"] == pytest.approx(0.0, abs=1e-15)
    assert got["mix_share"] == pytest.approx(0.0, abs=1e-15) and got["within_share"] == pytest.approx(0.0, abs=1e-15)


def _rows(table, bins):
    return np.array([[sum(1 for b in row if b == k) for k in range(bins)] for row in table])


def test_a_pure_mix_change_is_all_mix():
    """Segments with different behaviour (domestic low bins, industrial high bins), the same behaviour in both
    windows, industrial's share 20% -> 50%: the feature's PSI is all segment mix."""
    n_ref = np.array([[400, 300, 100, 0], [0, 20, 80, 100]])  # domestic 800, industrial 200
    n_cur = np.array([[200, 150, 50, 0], [0, 50, 200, 250]])  # domestic 400 (the same shape), industrial 500
    got = decompose(n_ref, n_cur, EPS)
    # by hand: marginals (.4, .32, .18, .1) -> (2, 2, 2.5, 2.5) / 9; PSI = 0.1045 + 0.0357 + 0.0424 + 0.1816
    assert got["psi"] == pytest.approx(0.3642, abs=1e-4)
    # the empty cells (floored at epsilon) are the only within-segment difference: epsilon-sized
    assert got["within"] < 1e-3 * got["psi"] and got["within_only_psi"] < 1e-3 * got["psi"]
    assert got["mix_share"] == pytest.approx(got["psi"], rel=1e-3) and abs(got["within_share"]) < 1e-3 * got["psi"]


def test_a_pure_within_change_in_one_segment_ranks_it_first():
    """Three segments with fixed shares; only segment "b" changed its distribution."""
    n_ref = np.array([[100, 100, 100], [300, 50, 50], [10, 80, 10]])
    n_cur = np.array([[100, 100, 100], [50, 50, 300], [10, 80, 10]])
    entry = attribute("estrato", ["a", "b", "c"], ["lo", "mid", "hi"], n_ref, n_cur, EPS)
    assert entry["mix"] == pytest.approx(0.0, abs=1e-15) and entry["mix_only_psi"] == pytest.approx(0.0, abs=1e-15)
    # the shares did not move, so B (reference mix, current behaviour) is the current marginal itself: all within
    assert entry["within_only_psi"] == pytest.approx(entry["within_share"], abs=1e-12)
    assert entry["within_share"] > 0.1 and entry["mix_share"] == pytest.approx(0.0, abs=1e-12)
    top, *rest = entry["segments"]
    assert top["value"] == "b" and top["within"] > 0.1 and all(s["within"] == pytest.approx(0, abs=1e-15)
                                                                 for s in rest)
    # segment b alone: (300, 50, 50) -> (50, 50, 300), its own PSI by hand
    assert top["psi"] == pytest.approx(2 * (0.75 - 0.125) * math.log(0.75 / 0.125), abs=1e-12)
    assert top["ref_share"] == pytest.approx(400 / 800) and top["cur_share"] == pytest.approx(400 / 800)


def test_no_change_is_all_zero():
    n = np.array([[5, 0, 7], [0, 0, 3], [9, 1, 0]])
    got = decompose(n, 3 * n, EPS)  # the same proportions, three times the rows
    for key in KEYS:
        assert got[key] == pytest.approx(0.0, abs=1e-15), key


def test_a_segment_new_in_the_current_is_its_own_line_and_missing_is_a_segment():
    n_ref = np.array([[60, 40], [0, 0], [10, 10], [0, 0]])
    n_cur = np.array([[30, 20], [40, 10], [10, 10], [0, 0]])  # "new" only in the current; an empty segment
    entry = attribute("cluster", ["1", "new", None, "gone"], ["lo", "hi"], n_ref, n_cur, EPS)
    got = {s["value"]: s for s in entry["segments"]}
    assert set(got) == {"1", "new", None}  # the segment empty on both sides adds nothing and is left out
    assert got["new"]["ref_share"] == 0.0 and got["new"]["cur_share"] == pytest.approx(50 / 120)
    assert got["new"]["psi"] is None  # no reference rows: no PSI of its own
    assert got[None]["ref_share"] == pytest.approx(20 / 120) and got[None]["cur_share"] == pytest.approx(20 / 120)
    want = oracle([[60, 40], [0, 0], [10, 10]], [[30, 20], [40, 10], [10, 10]])
    for key in KEYS[:-1]:
        assert entry[key] == pytest.approx(want[key], abs=1e-12), key
    # segments 1 and missing kept their conditionals; the new one's floored reference conditional is uniform
    # (epsilon in each cell), so its term is q_s KL((.8, .2) || (.5, .5)) plus an epsilon-weighted reverse term
    assert [s["value"] for s in entry["segments"]][0] == "new"
    q_new = 50 / 120
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert got["new"]["within"] == pytest.approx(q_new * kl, rel=1e-3)
    assert entry["table"]["segments"] == ["1", "new", None]


def test_hundreds_of_segment_values_stay_fast_and_exact():
    """A municipality-like column: 800 segments x 13 bins; the decomposition in well under a second, the
    identities exact, against the oracle."""
    import time

    rng = np.random.default_rng(3)
    n_ref = rng.integers(0, 50, size=(800, 13))
    n_cur = rng.integers(0, 50, size=(800, 13))
    clock = time.perf_counter()
    entry = attribute("municipality", [str(i) for i in range(800)], list(range(13)), n_ref, n_cur, EPS)
    assert time.perf_counter() - clock < 1.0
    assert len(entry["segments"]) == 800
    want = oracle(n_ref.tolist(), n_cur.tolist())
    for key in KEYS[:-1]:
        assert entry[key] == pytest.approx(want[key], abs=1e-9), key
    assert entry["joint"] == pytest.approx(entry["mix"] + entry["within"], abs=1e-9)
    assert [s["within"] for s in entry["segments"]] == sorted((s["within"] for s in entry["segments"]), reverse=True)
