"""Estrato (socio-economic stratum 1..6) from a raw numeric column and five ascending cut points.

Bins are left-closed, right-open: with cuts t1 < ... < t5, a value v gets estrato k when t(k-1) <= v < t(k)
(t0 = -inf, t6 = +inf), so a value equal to a cut belongs to the stratum above it. A missing value (null/NaN)
gets estrato 0, "unknown": it is a separate group in the reports rather than a guess.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

UNKNOWN_ESTRATO = 0


def assign_estrato(values: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Estrato per value: 1..len(thresholds)+1 by the left-closed bins above, 0 where the value is missing.

    Args:
        values: the raw column as a numeric numpy array (NaN for missing).
        thresholds: ascending cut points (5 for estrato 1..6); empty gives every record estrato 0.

    Returns:
        int8 array of the same length.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(thresholds) == 0:
        return np.zeros(len(values), dtype=np.int8)
    estrato = np.searchsorted(np.asarray(thresholds, dtype=np.float64), values, side="right") + 1
    estrato[np.isnan(values)] = UNKNOWN_ESTRATO
    return estrato.astype(np.int8)
