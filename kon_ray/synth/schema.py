"""What the generator knows about each dataset beyond its YAML: its generative knobs, keyed by name.

One source for each fact, and why this split:

- `conf/dataset/<NAME>.yaml` is what users read and edit and what the pipeline checks data against, so it is the
  source of the raw schema (`columns:`: names, file order, types), of the columns' roles (`features:`), of which
  tariff values are industrial (`industrial_values`) and of the estrato cut points
  (`segment.estrato_thresholds`). The generator reads all of them from the composed dataset config and repeats
  none of them.
- This module holds only what the generator alone needs: per dataset its random-stream code, usage levels,
  prices, tariff and meter-brand shares (keyed by value); per column the range its null share falls in
  (`NULL_SHARE`, keyed by column name). kon_ray/synth/model.py holds the rule that draws each column.
- `bind(dataset)` joins the two before a row is written and fails with one ConfigError naming the column (or
  value) and the file to fix: a declared column the generator has no rule for, a column the generator draws that
  the YAML does not declare, a declared type the rule does not draw, an industrial tariff one side lacks.

The rules are the code of `model.generate_block` (shared columns always, a dataset's extra columns when the YAML
declares them); rather than a third hand-kept list of "what the generator can draw", `bind` draws one probe block
and compares its columns and kinds with the declaration. A probe is a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Dict, List, Tuple

import pyarrow as pa

from kon_ray.errors import ConfigError

if TYPE_CHECKING:
    pass

SERIES_MONTHS = 12  # <prefix>01 .. <prefix>12: 12 months of history, 12 = the record's own month

# Declared type (conf/dataset/*.yaml `columns:`) -> the Arrow type the generator writes.
ARROW_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}

# The columns whose meaning the generator's rules fix (what it draws as id, date, label and population).
ROLE_COLUMNS = {
    "id_column": "customer_id",
    "date_column": "record_date",
    "target_column": "segment",
    "population_column": "tariff_type",
}
ESTRATO_COLUMN = "avaluo_catastral"  # the generator prices bills by the estrato of this column


def _series(prefix: str, share: Tuple[float, float]) -> Dict[str, Tuple[float, float]]:
    return {f"{prefix}{k:02d}": share for k in range(1, SERIES_MONTHS + 1)}


# The range each column's null share falls in over the reference (pre-drift) months on a 20k-row sample, whatever
# the seed (tests/synth check it); a column not listed has no nulls. Keyed by column name: a column means the same
# in every dataset that has it.
NULL_SHARE: Dict[str, Tuple[float, float]] = {
    "socioeconomic_zone": (0.025, 0.055),
    "avaluo_catastral": (0.004, 0.02),
    "payment_channel": (0.005, 0.02),
    "meter_brand": (0.03, 0.07),
    "meter_age_years": (0.02, 0.045),
    "last_payment_date": (0.005, 0.02),
    **_series("kwh_m", (0.012, 0.03)),
    **_series("gas_m3_m", (0.012, 0.03)),
    **_series("bill_m", (0.002, 0.01)),
    **_series("paid_m", (0.002, 0.01)),
    "tax_amount": (0.01, 0.03),
    "contracted_power_kw": (0.01, 0.03),
    "household_size": (0.17, 0.29),
    "peak_demand_kw": (0.06, 0.10),
    "property_area_m2": (0.08, 0.12),
    "last_inspection_date": (0.06, 0.10),
}


@dataclass(frozen=True)
class DatasetSpec:
    """One synthetic dataset's generative knobs: the few parameters of the model that differ between datasets."""

    name: str
    code: int  # mixed into every block's seed, so two datasets never share a random stream
    usage_prefix: str  # the consumption series (kwh_m or gas_m3_m); drift scales it
    usage_unit: str  # kWh or m3
    domestic_usage: float  # median monthly use of a domestic "regular" record
    industrial_usage: float  # median monthly use of an industrial "regular" record
    unit_price: float  # COP per unit before subsidies/contributions
    fixed_charge: Tuple[float, float]  # COP per month: (domestic, industrial)
    domestic_tariffs: Tuple[Tuple[str, float], ...]  # (value, share within domestic): standard, then rural
    industrial_tariffs: Tuple[Tuple[str, float], ...]  # (value, share within industrial): low, mid, high tier
    industrial_share: float  # overall share of industrial records
    meter_brands: Tuple[Tuple[str, float], ...]  # (brand, share) in the reference months
    new_meter_brand: str  # appears only in the drift window

    @property
    def industrial_values(self) -> List[str]:
        return [value for value, _ in self.industrial_tariffs]


@dataclass(frozen=True)
class SynthDataset:
    """A dataset as the generator draws it: the YAML's declared columns and estrato cut points with the dataset's
    knobs (built and checked by `bind`; small and picklable, it travels to the writer's worker processes)."""

    spec: DatasetSpec
    columns: Tuple[Tuple[str, str], ...]  # (column, declared type) in file order: dataset.columns
    estrato_thresholds: Tuple[float, ...]  # dataset.segment.estrato_thresholds

    @property
    def name(self) -> str:
        return self.spec.name

    def has(self, column: str) -> bool:
        """Whether the dataset declares `column` (a rule for an optional column draws only then)."""
        return column in self._names

    @cached_property
    def _names(self) -> frozenset:
        return frozenset(name for name, _ in self.columns)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in self.columns])


_ELECTRIC_BRANDS = (
    ("Landis+Gyr", 0.24),
    ("Itron", 0.18),
    ("Elster", 0.14),
    ("Schneider", 0.11),
    ("Siemens", 0.10),
    ("Kamstrup", 0.09),
    ("Holley", 0.08),
    ("ZIV", 0.06),
)
_GAS_BRANDS = (
    ("Elster", 0.30),
    ("Itron", 0.22),
    ("Pietro Fiorentini", 0.16),
    ("Apator", 0.12),
    ("Metrix", 0.12),
    ("Actaris", 0.08),
)

CLIE = DatasetSpec(
    name="CLIE",
    code=1,
    usage_prefix="kwh_m",
    usage_unit="kWh",
    domestic_usage=160.0,
    industrial_usage=2_600.0,
    unit_price=880.0,
    fixed_charge=(9_500.0, 48_000.0),
    domestic_tariffs=(("residencial", 0.86), ("residencial_rural", 0.14)),
    industrial_tariffs=(("comercial", 0.58), ("industrial", 0.32), ("industrial_mt", 0.10)),
    industrial_share=0.18,
    meter_brands=_ELECTRIC_BRANDS,
    new_meter_brand="Hexing",
)

POLA = DatasetSpec(
    name="POLA",
    code=2,
    usage_prefix="kwh_m",
    usage_unit="kWh",
    domestic_usage=145.0,
    industrial_usage=3_200.0,
    unit_price=910.0,
    fixed_charge=(8_800.0, 52_000.0),
    domestic_tariffs=(("residencial", 0.80), ("residencial_rural", 0.20)),
    industrial_tariffs=(("comercial", 0.55), ("industrial", 0.33), ("industrial_mt", 0.12)),
    industrial_share=0.20,
    meter_brands=_ELECTRIC_BRANDS,
    new_meter_brand="Hexing",
)

HFAC = DatasetSpec(
    name="HFAC",
    code=3,
    usage_prefix="gas_m3_m",
    usage_unit="m3",
    domestic_usage=19.0,
    industrial_usage=900.0,
    unit_price=2_650.0,
    fixed_charge=(4_200.0, 31_000.0),
    domestic_tariffs=(("residencial", 0.90), ("residencial_rural", 0.10)),
    industrial_tariffs=(("comercial", 0.62), ("industrial", 0.30), ("gnv", 0.08)),
    industrial_share=0.16,
    meter_brands=_GAS_BRANDS,
    new_meter_brand="Diehl",
)

SPECS: Dict[str, DatasetSpec] = {spec.name: spec for spec in (CLIE, POLA, HFAC)}


def spec_for(name: str) -> DatasetSpec:
    """The generator's knobs for a dataset name, or a ConfigError listing the ones it can generate."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(
            f"dataset.name {name!r}: the synthetic generator knows only {', '.join(SPECS)}"
        ) from None
