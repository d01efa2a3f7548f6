"""The estimated change in accuracy from the reference to the current window, split into the part due to the segment
mix and the part within segments (issue 31, item 3). Pure: numbers in, numbers out.

Estimated accuracy is a mean over rows (CBPE: each row's calibrated probability of its predicted class), so a
window's accuracy is its segments' accuracies weighted by their shares: A = sum_s w_s a_s. With p_s, a_s the
reference's shares and accuracies and q_s, b_s the current's, the change A_cur - A_ref = sum_s (q_s b_s - p_s a_s)
splits as the two-player Shapley value of (mix, behaviour), each player entering first half the time:

    mix    = sum_s (q_s - p_s) (a_s + b_s) / 2     the shares moved, at the average of the two accuracies
    within = sum_s (p_s + q_s) / 2 (b_s - a_s)     the accuracies moved, at the average of the two shares

and mix + within = A_cur - A_ref exactly (up to float rounding, ~1e-15). A segment present in one window only has
no accuracy in the other; it is taken as unchanged (b_s = a_s), so its whole effect is mix: a segment that appears
moves the mix, it does not move a within-segment accuracy that never existed.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

Side = Mapping[Any, Tuple[int, float]]  # segment value -> (rows, estimated accuracy)


def accuracy_change(by: str, reference: Side, current: Side) -> Dict[str, Any]:
    """The split of one segment column: `{"by", "reference", "current", "change", "mix", "within", "segments"}`,
    segments (value, shares, accuracies, their mix and within terms) sorted by the size of their within term, then
    of their mix term, largest first."""
    ref_rows = sum(rows for rows, _ in reference.values())
    cur_rows = sum(rows for rows, _ in current.values())
    if ref_rows <= 0 or cur_rows <= 0:
        raise ValueError(f"accuracy change by {by}: a window without rows")
    segments = []
    for value in dict.fromkeys([*reference, *current]):
        p = reference[value][0] / ref_rows if value in reference else 0.0
        q = current[value][0] / cur_rows if value in current else 0.0
        a = reference[value][1] if value in reference else current[value][1]
        b = current[value][1] if value in current else a
        segments.append({"value": value, "ref_share": p, "cur_share": q,
                         "ref_accuracy": a if value in reference else None,
                         "cur_accuracy": b if value in current else None,
                         "mix": (q - p) * (a + b) / 2, "within": (p + q) / 2 * (b - a)})
    segments.sort(key=lambda s: (-abs(s["within"]), -abs(s["mix"])))
    before = sum(s["ref_share"] * s["ref_accuracy"] for s in segments if s["ref_accuracy"] is not None)
    after = sum(s["cur_share"] * s["cur_accuracy"] for s in segments if s["cur_accuracy"] is not None)
    return {"by": by, "reference": before, "current": after, "change": after - before,
            "mix": sum(s["mix"] for s in segments), "within": sum(s["within"] for s in segments),
            "segments": segments}


def sentence(change: Mapping[str, Any]) -> str:
    """The split in words, e.g. "by estrato: estimated accuracy 0.812 -> 0.774 (-0.038): segment mix -0.010,
    within segments -0.028; estrato 6 moved most within (-0.021)"."""
    line = (f"by {change['by']}: estimated accuracy {change['reference']:.3f} -> {change['current']:.3f}"
            f" ({change['change']:+.3f}): segment mix {change['mix']:+.3f}, within segments {change['within']:+.3f}")
    top = change["segments"][0] if change["segments"] else None
    if top is not None and top["within"] != 0.0:
        line += f"; {change['by']} {top['value']} moved most within ({top['within']:+.3f})"
    return line
