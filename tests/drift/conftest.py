"""Tiny reference/current frames with every awkward case the drift contract names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_frames(n_ref: int = 2500, n_cur: int = 1800, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(n: int, shift: float, cats: list, p: list) -> pd.DataFrame:
        cont = rng.normal(shift, 1.0 + shift, size=n)
        cont[rng.random(n) < 0.05] = np.nan
        disc = rng.poisson(3 + 2 * shift, size=n).astype("int64")
        cat = rng.choice(cats, size=n, p=p).astype(object)
        cat[rng.random(n) < 0.03] = None
        return pd.DataFrame(
            {
                "customer_id": np.arange(n),
                "cont": cont,
                "disc": disc,
                "const": np.full(n, 4.0),
                "allnan": np.full(n, np.nan),
                "cat": pd.Series(cat, dtype="string"),
                "flag": rng.random(n) < 0.3 + shift / 2,
            }
        )

    ref = frame(n_ref, 0.0, ["a", "b", "c"], [0.5, 0.3, 0.2])
    cur = frame(n_cur, 0.3, ["a", "b", "d"], [0.4, 0.4, 0.2])  # "c" only in ref, "d" only in cur
    return ref, cur


@pytest.fixture(scope="module")
def frames():
    return make_frames()
