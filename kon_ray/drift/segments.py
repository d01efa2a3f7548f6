"""Segment columns that drift derives from each batch instead of reading (pure, Arrow in and out).

The pipeline's DriftCheck runs after the segment stage and attributes drift by `estrato` and `cluster` (issue 30):
neither is a column of the feature data (the segment stage publishes its rules, `segment_state.json`, and train and
infer apply them per batch with `assign_segments`). `SegmentRules` applies the same function to every batch the
drift engine reads, in both windows, so the joint tables are counted in the pass that counts the features: the
units read the rules' few input columns beside their own, never the data a second time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple

import pyarrow as pa

from kon_ray.segment.state import CLUSTER, ESTRATO, SEGMENT_COLUMNS, SegmentState, assign_segments


@dataclass(frozen=True)
class SegmentRules:
    """The saved segment state, reduced to the segment columns `names` asked for (their inputs only are read)."""

    state: SegmentState
    names: Tuple[str, ...]

    @classmethod
    def of(cls, state: SegmentState, names) -> "SegmentRules":
        names = tuple(n for n in SEGMENT_COLUMNS if n in set(names))
        # an unasked column's inputs blanked: assign_segments then gives it a constant, reading nothing for it
        if ESTRATO not in names:
            state = dataclasses.replace(state, estrato_column="")
        if CLUSTER not in names:
            state = dataclasses.replace(state, cluster_features=[], centroids=[])
        return cls(state, names)

    @property
    def inputs(self) -> Tuple[str, ...]:
        """The columns a batch must carry."""
        return tuple(self.state.input_columns())

    def apply(self, table: pa.Table) -> pa.Table:
        """`table` with the derived segment columns appended (by `assign_segments`, as train and infer do)."""
        # a frame, not a dict of arrays: it keeps the row count when the rules read no column (nothing configured)
        made = assign_segments(table.select(list(self.inputs)).to_pandas(), self.state)
        for name in self.names:
            table = table.append_column(name, pa.array(made[name].to_numpy()))
        return table
