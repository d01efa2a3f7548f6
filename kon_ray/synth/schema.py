"""The synthetic datasets' columns: the single source of the raw schema the generator writes.

`conf/dataset/<NAME>.yaml` declares the same columns (tests/synth check that they agree, name, order and type).
Each column has a role that says how the pipeline uses it; `feature_lists` turns roles into the FeatureConfig
lists the dataset YAML carries. `missing` is the range the column's null share falls in for the reference
(older) months, whatever the seed; tests/synth check it on a 20k sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Tuple

import pyarrow as pa

from kon_ray.errors import ConfigError

SERIES_MONTHS = 12  # <prefix>01 .. <prefix>12: 12 months of history, 12 = the record's own month

# Declared type -> the Arrow type the generator writes.
ARROW_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}

# Roles: id, date, target, population (tariff), series, numeric, flag (bool), categorical, dates (other dates).
ROLES = ("id", "date", "target", "population", "series", "numeric", "flag", "categorical", "dates")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # one of ARROW_TYPES
    role: str  # one of ROLES
    missing: Tuple[float, float] = (0.0, 0.0)  # null share range in the reference months (all rows)

    def __post_init__(self) -> None:
        assert self.type in ARROW_TYPES, self.type
        assert self.role in ROLES, self.role


@dataclass(frozen=True)
class DatasetSpec:
    """One synthetic dataset: its columns and the few knobs of the generative model that differ between them."""

    name: str
    code: int  # mixed into every block's seed, so two datasets never share a random stream
    columns: Tuple[Column, ...]
    series_prefixes: Tuple[str, ...]  # monthly series, e.g. ("kwh_m", "bill_m")
    usage_prefix: str  # the consumption series (kwh_m or gas_m3_m); drift scales it
    usage_unit: str  # kWh or m3
    domestic_usage: float  # median monthly use of a domestic "regular" record
    industrial_usage: float  # median monthly use of an industrial "regular" record
    unit_price: float  # COP per unit before subsidies/contributions
    fixed_charge: Tuple[float, float]  # COP per month: (domestic, industrial)
    domestic_tariffs: Tuple[Tuple[str, float], ...]  # (value, share within domestic)
    industrial_tariffs: Tuple[Tuple[str, float], ...]  # (value, share within industrial)
    industrial_share: float  # overall share of industrial records
    meter_brands: Tuple[Tuple[str, float], ...]  # (brand, share) in the reference months
    new_meter_brand: str  # appears only in the drift window

    @property
    def industrial_values(self) -> List[str]:
        return [value for value, _ in self.industrial_tariffs]

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.columns]

    def has(self, name: str) -> bool:
        return name in self._name_set

    @cached_property
    def _name_set(self) -> frozenset:
        return frozenset(self.names)

    def declared_columns(self) -> Dict[str, str]:
        """column -> declared type, in file order: what conf/dataset/<NAME>.yaml `columns:` must say."""
        return {c.name: c.type for c in self.columns}

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])

    def feature_lists(self) -> Dict[str, List[str]]:
        """The FeatureConfig lists for this dataset: what conf/dataset/<NAME>.yaml `features:` must say."""
        return {
            "monthly_series": list(self.series_prefixes),
            "numeric": [c.name for c in self.columns if c.role in ("numeric", "flag")],
            "categorical": [c.name for c in self.columns if c.role in ("population", "categorical")],
            "dates": [c.name for c in self.columns if c.role == "dates"],
        }


def _series(prefix: str, missing: Tuple[float, float]) -> Tuple[Column, ...]:
    return tuple(Column(f"{prefix}{k:02d}", "float64", "series", missing) for k in range(1, SERIES_MONTHS + 1))


def _head(usage_prefix: str) -> Tuple[Column, ...]:
    """Columns every dataset has, in file order (before the dataset's own extras)."""
    return (
        Column("customer_id", "int64", "id"),
        Column("record_date", "date", "date"),
        Column("tariff_type", "string", "population"),
        Column("segment", "string", "target"),
        Column("region", "string", "categorical"),
        Column("municipality", "string", "categorical"),
        Column("socioeconomic_zone", "string", "categorical", (0.025, 0.055)),
        Column("avaluo_catastral", "float64", "numeric", (0.004, 0.02)),
        Column("payment_channel", "string", "categorical", (0.005, 0.02)),
        Column("meter_brand", "string", "categorical", (0.03, 0.07)),
        Column("meter_age_years", "float64", "numeric", (0.02, 0.045)),
        Column("contract_start", "date", "dates"),
        Column("last_payment_date", "date", "dates", (0.005, 0.02)),
        Column("late_payments_12m", "int64", "numeric"),
        Column("days_past_due", "int64", "numeric"),
        Column("outstanding_balance", "float64", "numeric"),
        Column("is_autopay", "bool", "flag"),
        Column("paperless_billing", "bool", "flag"),
        Column("avg_consumption_6m", "float64", "numeric"),
        *_series(usage_prefix, (0.012, 0.03)),
        *_series("bill_m", (0.002, 0.01)),
    )


def _pick(columns: Tuple[Column, ...], drop: Tuple[str, ...] = ()) -> Tuple[Column, ...]:
    return tuple(c for c in columns if c.name not in drop)


_DEBT = (
    Column("debt_agreement", "bool", "flag"),
    Column("complaints_12m", "int64", "numeric"),
    Column("billing_cycle", "string", "categorical"),
)

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
    columns=(
        *_head("kwh_m"),
        *_DEBT,
        *_series("paid_m", (0.002, 0.01)),
        Column("subsidy_contribution", "float64", "numeric"),
        Column("tax_amount", "float64", "numeric", (0.01, 0.03)),
        Column("adjustments_amount", "float64", "numeric"),
        Column("reconnection_count", "int64", "numeric"),
        Column("service_suspended", "bool", "flag"),
        Column("has_solar_panels", "bool", "flag"),
        Column("contracted_power_kw", "float64", "numeric", (0.01, 0.03)),
        Column("household_size", "float64", "numeric", (0.17, 0.29)),
    ),
    series_prefixes=("kwh_m", "bill_m", "paid_m"),
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
    columns=(
        *_head("kwh_m"),
        Column("billing_cycle", "string", "categorical"),
        Column("contracted_power_kw", "float64", "numeric", (0.01, 0.03)),
        Column("peak_demand_kw", "float64", "numeric", (0.06, 0.10)),
        Column("outage_hours_12m", "float64", "numeric"),
        Column("voltage_level", "string", "categorical"),
        Column("has_solar_panels", "bool", "flag"),
    ),
    series_prefixes=("kwh_m", "bill_m"),
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
    columns=(
        *_head("gas_m3_m"),
        *_pick(_DEBT, drop=("billing_cycle",)),
        Column("household_size", "float64", "numeric", (0.17, 0.29)),
        Column("property_area_m2", "float64", "numeric", (0.08, 0.12)),
        Column("appliance_count", "int64", "numeric"),
        Column("has_gas_heater", "bool", "flag"),
        Column("pressure_class", "string", "categorical"),
        Column("last_inspection_date", "date", "dates", (0.06, 0.10)),
        Column("inspection_overdue", "bool", "flag"),
    ),
    series_prefixes=("gas_m3_m", "bill_m"),
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
    """The generator's spec for a dataset name, or a ConfigError listing the ones it can generate."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(
            f"dataset.name {name!r}: the synthetic generator knows only {', '.join(SPECS)}"
        ) from None
