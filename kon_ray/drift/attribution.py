"""Why a feature drifted: its shift split exactly into segment mix and within-segment change (pure numpy).

For a segment column S and a feature's PSI bins b (numeric: its reference bins with the -inf, +inf and missing bins;
categorical: its categories with missing), the joint count tables n_ref[s, b] and n_cur[s, b] are counted in the
same pass as the feature's own counts (kon_ray.drift.summary). From them, with p, q the joint proportions of the two
sides, every empty cell floored at `drift.psi_epsilon` exactly as PSI floors an empty bin (the floored cells are not
renormalised), and the segment shares p_s = sum_b p[s, b] and conditionals p[b|s] = p[s, b] / p_s derived from the
floored cells:

- joint  = sum_{s,b} (q - p) ln(q / p), the PSI of the joint table;
- mix    = sum_s (q_s - p_s) ln(q_s / p_s), the PSI of the segment shares;
- within = sum_s within_s, within_s = p_s KL(p_b|s || q_b|s) + q_s KL(q_b|s || p_b|s);
  joint = mix + within exactly (the chain rule of KL divergence, to rounding).
- The feature's own PSI, PSI(P, Q) of its marginal counts (the number the report shows), split between the two
  causes: A_b = sum_s q_s p_b|s (current mix, reference behaviour), B_b = sum_s p_s q_b|s (reference mix, current
  behaviour), P_b = sum_s p[s, b]; mix_only_psi = PSI(P, A), within_only_psi = PSI(P, B), and the two-player
  Shapley shares mix_share = (PSI(P,A) + PSI(P,Q) - PSI(P,B)) / 2, within_share = (PSI(P,B) + PSI(P,Q) - PSI(P,A)) / 2,
  which add up to the feature's PSI exactly. A, B and P are sums of floored cells (never zero), so these PSIs
  need no further floor.

A segment with no reference rows (new in the current data) has floored cells only on the reference side: its
reference conditional is uniform and its within_s measures its whole current distribution; it is its own line,
never dropped. Missing segment values are one segment (value None). Bins and segments empty on both sides are left
out, as PSI leaves out a category neither side has (they add nothing but epsilon noise).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from kon_ray.drift.psi import psi as marginal_psi


def _floored(counts: np.ndarray, epsilon: float) -> np.ndarray:
    total = counts.sum()
    p = counts / total if total else np.zeros_like(counts)
    return np.where(p == 0.0, epsilon, p)


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum((q - p) * np.log(q / p)))


def decompose(n_ref: np.ndarray, n_cur: np.ndarray, epsilon: float) -> Dict[str, Any]:
    """The decomposition of one feature by one segment column, from its joint count tables [segment, bin]:
    {"joint", "mix", "within", "within_s" (per segment row, an array), "mix_only_psi", "within_only_psi",
    "mix_share", "within_share", "psi" (the feature's own PSI, of the tables' column sums)}. Rows and columns
    empty on both sides must be left out by the caller (`attribute` does)."""
    ref = np.asarray(n_ref, dtype=np.float64)
    cur = np.asarray(n_cur, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 2:
        raise ValueError(f"joint tables differ in shape ({ref.shape} vs {cur.shape})")
    p, q = _floored(ref, epsilon), _floored(cur, epsilon)
    p_s, q_s = p.sum(axis=1), q.sum(axis=1)
    p_cond, q_cond = p / p_s[:, None], q / q_s[:, None]
    log_ratio = np.log(q_cond / p_cond)
    within_s = p_s * np.sum(p_cond * -log_ratio, axis=1) + q_s * np.sum(q_cond * log_ratio, axis=1)
    joint = _psi(p.ravel(), q.ravel())
    mix = _psi(p_s, q_s)
    big_p = p.sum(axis=0)
    mixed = (q_s[:, None] * p_cond).sum(axis=0)  # A: current mix, reference behaviour
    behaved = (p_s[:, None] * q_cond).sum(axis=0)  # B: reference mix, current behaviour
    mix_only, within_only = _psi(big_p, mixed), _psi(big_p, behaved)
    own = marginal_psi(ref.sum(axis=0), cur.sum(axis=0), epsilon) if ref.sum() and cur.sum() else 0.0
    return {
        "joint": joint,
        "mix": mix,
        "within": float(within_s.sum()),
        "within_s": within_s,
        "mix_only_psi": mix_only,
        "within_only_psi": within_only,
        "mix_share": (mix_only + own - within_only) / 2.0,
        "within_share": (within_only + own - mix_only) / 2.0,
        "psi": own,
    }


def attribute(by: str, segments: Sequence[Optional[str]], bins: Sequence[Any], n_ref: np.ndarray,
              n_cur: np.ndarray, epsilon: float) -> Dict[str, Any]:
    """The report's `attribution` entry for one feature and segment column `by`: the numbers of `decompose`, the
    segments ranked by `within` (descending; ties by value, missing last) with their row shares on both sides and
    their own PSI (null when a side has no rows in the segment), and the joint tables themselves (`table`: the
    segment values, the bin labels, the two count matrices) so that every number can be recomputed from the report."""
    ref = np.asarray(n_ref, dtype=np.int64).reshape(len(segments), len(bins))
    cur = np.asarray(n_cur, dtype=np.int64).reshape(len(segments), len(bins))
    rows = (ref.sum(axis=1) + cur.sum(axis=1)) > 0
    cols = (ref.sum(axis=0) + cur.sum(axis=0)) > 0
    ref, cur = ref[rows][:, cols], cur[rows][:, cols]
    values = [v for v, keep in zip(segments, rows) if keep]
    labels = [b for b, keep in zip(bins, cols) if keep]
    if not values:  # no rows at all: nothing to split
        numbers = {k: 0.0 for k in ("joint", "mix", "within", "mix_only_psi", "within_only_psi", "mix_share",
                                    "within_share")}
        return {"by": by, **numbers, "segments": [], "table": {"segments": [], "bins": list(bins),
                                                               "reference": [], "current": []}}
    d = decompose(ref, cur, epsilon)
    ref_rows, cur_rows = ref.sum(axis=1), cur.sum(axis=1)
    ref_total, cur_total = max(int(ref_rows.sum()), 1), max(int(cur_rows.sum()), 1)
    lines: List[Dict[str, Any]] = []
    for i, value in enumerate(values):
        own = marginal_psi(ref[i], cur[i], epsilon) if ref_rows[i] and cur_rows[i] else None
        lines.append({"value": value, "ref_share": float(ref_rows[i] / ref_total),
                      "cur_share": float(cur_rows[i] / cur_total), "within": float(d["within_s"][i]), "psi": own,
                      "reference_rows": int(ref_rows[i]), "current_rows": int(cur_rows[i])})
    lines.sort(key=lambda s: (-s["within"], s["value"] is None, str(s["value"])))
    return {
        "by": by,
        **{k: float(d[k]) for k in ("joint", "mix", "within", "mix_only_psi", "within_only_psi", "mix_share",
                                    "within_share")},
        "segments": lines,
        "table": {"segments": values, "bins": labels, "reference": ref.tolist(), "current": cur.tolist()},
    }


def joint_table(codes_seg: np.ndarray, codes_bin: np.ndarray, segments: int, bins: int) -> np.ndarray:
    """Counts [segment, bin] of rows with segment code `codes_seg` and bin code `codes_bin` (one bincount)."""
    flat = codes_seg.astype(np.int64) * bins + codes_bin.astype(np.int64)
    return np.bincount(flat, minlength=segments * bins).reshape(segments, bins)
