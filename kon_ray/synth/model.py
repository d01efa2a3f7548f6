"""The generative model: one block of `BLOCK_ROWS` records drawn from a numpy Generator seeded by
(seed, dataset code, block index), returned as plain numpy arrays (strings as category codes, -1 = null).

A block is the unit of randomness, not the unit of output: the writer cuts files of any size out of the blocks,
so the same seed gives the same rows whatever `synth.rows_per_file` is, and any block can be drawn on its own.

How a record comes about (see kon_ray/synth/__init__.py for what later stages may rely on):
1. when: a month of the window (uniform) and a billing cycle (the day of the month);
2. where and who: region, municipality (Zipf within the region, the capital first), a latent wealth score,
   population (domestic/industrial) and tariff, property valuation (avaluo_catastral), socio-economic zone,
   payment channel;
3. the segment label, from a multinomial logit on those attributes (so tariff, region, wealth and channel shift
   the class mix), then the record's behaviour class: the label, or with probability LABEL_NOISE a random class;
4. behaviour traits drawn from the behaviour class: consumption level (relative to the record's wealth and
   tariff), trend, seasonal amplitude, payment delinquency, tenure; then the series and amounts from the traits,
   with missing readings, zero readings, spikes, refunds and credit balances.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Dict, Tuple

import numpy as np

from kon_ray.errors import ConfigError
from kon_ray.synth.schema import ESTRATO_COLUMN, ROLE_COLUMNS, SERIES_MONTHS, DatasetSpec, SynthDataset, spec_for

if TYPE_CHECKING:
    from kon_ray.config import DatasetConfig

BLOCK_ROWS = 1_000  # the unit of randomness; part of the determinism contract: changing it changes every row
DRIFT_MONTHS = 6  # the drift window: the last 6 months of the span (the later half if the span is < 12 months)
LABEL_NOISE = 0.08  # share of records whose behaviour follows a random class instead of their label

# Drift per unit of synth.drift, in the drift window only (documented in kon_ray/synth/__init__.py).
USAGE_SHIFT = 0.45  # usage series x (1 + USAGE_SHIFT d): large enough for PSI >= 0.1 at d=1
PRICE_SHIFT = 0.10  # unit price x (1 + PRICE_SHIFT d)
APP_SHARE = 0.12  # share of the window's records paying through the new "app" channel
NEW_BRAND_SHARE = 0.15  # share of the window's records with the new meter brand
AGE_NULL_SHIFT = 0.12  # meter_age_years null rate 3 % -> 3 % + AGE_NULL_SHIFT d

CLASSES = ("bajo_consumo", "regular", "alto_consumo", "estacional", "creciente", "moroso")
BAJO, REGULAR, ALTO, ESTACIONAL, CRECIENTE, MOROSO = range(len(CLASSES))

# Class shares before attribute effects (logits are their logs), per population.
_CLASS_BASE = {
    "domestic": np.log([0.21, 0.36, 0.12, 0.11, 0.08, 0.12]),
    "industrial": np.log([0.15, 0.33, 0.17, 0.15, 0.10, 0.10]),
}
# Drift of the class mix (logit shift per unit of synth.drift): more moroso and creciente, fewer estacional.
_CLASS_DRIFT = np.array([0.0, 0.0, 0.0, -0.35, 0.45, 0.75])
# Behaviour class -> offset of the log consumption level.
_LEVEL_OFFSET = np.array([-0.9, 0.0, 0.9, 0.05, -0.15, -0.1])

# (code, name, share, wealth, coastal, industry factor, municipalities)
REGIONS = (
    ("ANT", "ANTIOQUIA", 0.17, 0.15, 0, 1.20, 60),
    ("BOG", "BOGOTA_DC", 0.19, 0.45, 0, 1.10, 20),
    ("VAL", "VALLE", 0.12, 0.10, 0, 1.20, 42),
    ("ATL", "ATLANTICO", 0.09, -0.05, 1, 1.00, 23),
    ("SAN", "SANTANDER", 0.08, 0.10, 0, 1.00, 50),
    ("BOL", "BOLIVAR", 0.07, -0.30, 1, 0.90, 30),
    ("CUN", "CUNDINAMARCA", 0.10, 0.00, 0, 0.90, 45),
    ("NAR", "NARINO", 0.06, -0.55, 0, 0.60, 20),
    ("MET", "META", 0.05, -0.15, 0, 0.80, 15),
    ("CAL", "CALDAS", 0.07, -0.05, 0, 0.80, 15),
)
_REGION_SHARE = np.array([r[2] for r in REGIONS])
_REGION_WEALTH = np.array([r[3] for r in REGIONS])
_REGION_COASTAL = np.array([r[4] for r in REGIONS], dtype=bool)
_REGION_INDUSTRY = np.array([r[5] for r in REGIONS]) / float(np.dot(_REGION_SHARE, [r[5] for r in REGIONS]))
_MUNI_COUNTS = np.array([r[6] for r in REGIONS])
_MUNI_OFFSET = np.concatenate([[0], np.cumsum(_MUNI_COUNTS)[:-1]])
# Within a region municipality i has weight 1/(i+1)^1.1 (the capital, i=0, is the largest).
_MUNI_CDF = [np.cumsum(w) / w.sum() for w in (1.0 / np.arange(1, k + 1) ** 1.1 for k in _MUNI_COUNTS)]

ZONES = tuple(f"ZSE-{i}" for i in range(1, 7))
_ZONE_CUTS = np.array([-1.0, -0.35, 0.3, 0.95, 1.6])  # on wealth + noise

# Estrato 1..6 comes from avaluo_catastral (COP) cut at the dataset YAML's segment.estrato_thresholds (the
# pipeline's own rule); the avaluo model above gives domestic shares near 22/33/27/9/5/3 % for the YAMLs' cut points.
# Unit price factor by estrato (Colombian subsidies for 1-3, contributions for 5-6); industrial pays 1.2.
_PRICE_FACTOR = np.array([0.45, 0.55, 0.85, 1.0, 1.2, 1.2])

PAYMENT_CHANNELS = ("banco", "efectivo", "debito_automatico", "pse", "corresponsal", "app")  # app: drift only
_CHANNEL_BASE = np.array([0.2, 0.6, -0.9, -0.2, 0.1])
_CHANNEL_WEALTH = np.array([0.2, -0.7, 0.7, 0.5, -0.5])
_CHANNEL_INDUSTRIAL = np.array([0.3, -0.8, 0.6, 0.6, -0.6])
EFECTIVO, DEBITO, PSE, CORRESPONSAL, APP = 1, 2, 3, 4, 5

BILLING_CYCLES = tuple(f"C{i:02d}" for i in range(1, 21))
VOLTAGE_LEVELS = ("BT", "MT", "AT")
PRESSURE_CLASSES = ("baja", "media", "alta")
_POWER_STEPS = np.array([3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0])  # domestic contracted power, kW

_EPOCH = date(1970, 1, 1)
NULL_DATE = np.iinfo(np.int64).min  # a missing date in a block (the writer turns it into a null)


@dataclass(frozen=True)
class Calendar:
    """The record-date window: the first day of each month (days since 1970-01-01), oldest first."""

    month_starts: np.ndarray
    drift_from: int  # index of the first month of the drift window

    @classmethod
    def ending(cls, end_month: str, months: int) -> "Calendar":
        year, month = (int(part) for part in end_month.split("-"))
        index = year * 12 + (month - 1) - np.arange(months - 1, -1, -1)
        starts = np.array([(date(int(i // 12), int(i % 12) + 1, 1) - _EPOCH).days for i in index], dtype=np.int64)
        window = DRIFT_MONTHS if months >= 2 * DRIFT_MONTHS else months // 2
        return cls(month_starts=starts, drift_from=months - window)

    @property
    def months(self) -> int:
        return len(self.month_starts)

    @property
    def first_day(self) -> int:
        return int(self.month_starts[0])

    @property
    def drift_start_day(self) -> int:
        """The first day of the drift window (days since 1970-01-01)."""
        return int(self.month_starts[self.drift_from])


def municipalities() -> Tuple[str, ...]:
    return tuple(f"{code}-{i:03d}" for code, *_rest, count in REGIONS for i in range(1, count + 1))


def categories(spec: DatasetSpec) -> Dict[str, Tuple[str, ...]]:
    """The values each string column can take, in code order (codes index these; -1 is null): the columns in this
    table are drawn as strings, whichever of them a dataset declares."""
    tariffs = tuple(v for v, _ in spec.domestic_tariffs) + tuple(v for v, _ in spec.industrial_tariffs)
    table = {
        "tariff_type": tariffs,
        "segment": CLASSES,
        "region": tuple(r[1] for r in REGIONS),
        "municipality": municipalities(),
        "socioeconomic_zone": ZONES,
        "payment_channel": PAYMENT_CHANNELS,
        "meter_brand": tuple(b for b, _ in spec.meter_brands) + (spec.new_meter_brand,),
        "billing_cycle": BILLING_CYCLES,
        "voltage_level": VOLTAGE_LEVELS,
        "pressure_class": PRESSURE_CLASSES,
    }
    return table


def drawn_kind(name: str, values: np.ndarray, cats: Dict[str, Tuple[str, ...]]) -> str:
    """The declared type (conf/dataset/*.yaml) that the values a rule draws for `name` are written as."""
    if values.dtype.kind == "M":
        return "date"
    if values.dtype.kind == "f":
        return "float64"
    if values.dtype.kind == "b":
        return "bool"
    return "string" if name in cats else "int64"


def _dates(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 as datetime64[D] (so a column's kind says it is a date); NULL_DATE becomes NaT."""
    return days.astype(np.int64).view("datetime64[D]")


def customer_ids(rows: np.ndarray, seed: int) -> np.ndarray:
    """Unique, unordered ids: an affine permutation of the row index modulo the prime 2^31-1, plus 10^9."""
    prime = 2_147_483_647
    return 1_000_000_000 + ((rows + 1 + seed * 7_919) % prime) * 1_103_515_245 % prime


def block_rng(seed: int, spec: DatasetSpec, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, spec.code, block]))


def _choice(rng: np.random.Generator, shares: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(shares) / np.sum(shares)
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


def _gumbel_argmax(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One draw per row from softmax(logits) (n, k), by the Gumbel-max trick."""
    return np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _null(rng: np.random.Generator, values: np.ndarray, rate: np.ndarray | float) -> np.ndarray:
    """values with a `rate` share set to null: NaN for floats, -1 for category codes."""
    mask = rng.random(values.shape) < rate
    return np.where(mask, np.nan if values.dtype.kind == "f" else -1, values)


def generate_block(
    data: SynthDataset, calendar: Calendar, drift: float, seed: int, block: int
) -> Dict[str, np.ndarray]:
    """BLOCK_ROWS records of `data` as {column: array}; string columns as int codes (categories), dates as
    datetime64[D] (NaT = null). Every dataset gets the shared columns; an extra column only when `data` declares it."""
    spec = data.spec
    rng = block_rng(seed, spec, block)
    n = BLOCK_ROWS
    out: Dict[str, np.ndarray] = {}
    rows = block * n + np.arange(n, dtype=np.int64)
    out["customer_id"] = customer_ids(rows, seed)

    # 1. when
    month = rng.integers(0, calendar.months, n)
    d = np.where(month >= calendar.drift_from, drift, 0.0)  # drift strength per record (0 outside the window)
    cycle = rng.integers(0, len(BILLING_CYCLES), n)
    record = calendar.month_starts[month] + (cycle * 27) // (len(BILLING_CYCLES) - 1)  # day 1..28
    out["record_date"] = _dates(record)

    # 2. where and who
    region = _choice(rng, _REGION_SHARE, n)
    u = rng.random(n)
    local = np.zeros(n, dtype=np.int64)
    for r, cdf in enumerate(_MUNI_CDF):
        here = region == r
        local[here] = np.minimum(np.searchsorted(cdf, u[here], side="right"), len(cdf) - 1)
    capital = local == 0
    coastal = _REGION_COASTAL[region]
    wealth = _REGION_WEALTH[region] + 0.3 * capital + rng.normal(0.0, 1.0, n)
    industrial = rng.random(n) < spec.industrial_share * _REGION_INDUSTRY[region]
    n_dom = len(spec.domestic_tariffs)
    rural_share = spec.domestic_tariffs[1][1]
    rural = ~industrial & (
        rng.random(n) < _sigmoid(np.log(rural_share / (1 - rural_share)) - 0.5 * wealth + 0.6 * ~capital - 0.45)
    )
    tier = _choice(rng, np.array([s for _, s in spec.industrial_tariffs]), n)  # 2 = the high tier
    out["tariff_type"] = np.where(industrial, n_dom + tier, rural.astype(np.int64))
    out["region"] = region
    out["municipality"] = _MUNI_OFFSET[region] + local

    log_av = np.where(
        industrial,
        19.6 + 0.4 * wealth + rng.normal(0.0, 0.8, n),
        18.15 + 0.75 * wealth + rng.normal(0.0, 0.3, n),
    )
    avaluo = np.round(np.exp(log_av), -3)
    estrato = np.searchsorted(np.array(data.estrato_thresholds), avaluo, side="right")  # 0..5
    out["avaluo_catastral"] = _null(rng, avaluo, 0.01)
    zone = np.searchsorted(_ZONE_CUTS, wealth + rng.normal(0.0, 0.55, n))
    out["socioeconomic_zone"] = _null(rng, zone, 0.04)

    channel_logits = _CHANNEL_BASE + np.outer(wealth, _CHANNEL_WEALTH) + np.outer(industrial, _CHANNEL_INDUSTRIAL)
    channel = _gumbel_argmax(rng, channel_logits)
    channel = np.where(rng.random(n) < np.minimum(APP_SHARE * d, 0.6), APP, channel)
    cash = (channel == EFECTIVO) | (channel == CORRESPONSAL)

    # 3. the label, then the behaviour class
    logits = np.where(industrial[:, None], _CLASS_BASE["industrial"], _CLASS_BASE["domestic"])
    logits = logits + np.outer(d, _CLASS_DRIFT)
    logits[:, ALTO] += 0.35 * wealth + 0.8 * (industrial & (tier == 2))
    logits[:, BAJO] += -0.35 * wealth + 0.6 * rural
    logits[:, MOROSO] += -0.45 * wealth + 0.6 * cash
    logits[:, ESTACIONAL] += 0.9 * coastal
    logits[:, CRECIENTE] += 0.5 * (industrial & (tier == 0))
    label = _gumbel_argmax(rng, logits)
    out["segment"] = label
    behaviour = np.where(rng.random(n) < LABEL_NOISE, rng.integers(0, len(CLASSES), n), label)
    is_ = {c: behaviour == c for c in range(len(CLASSES))}

    # 4. traits
    tier_offset = np.array([-0.7, 0.3, 1.4])[tier]
    level = np.where(
        industrial,
        np.log(spec.industrial_usage) + tier_offset + 0.1 * wealth + rng.normal(0.0, 0.45, n)
        + np.log1p(rng.pareto(2.8, n)),  # a Pareto tail of very large sites
        np.log(spec.domestic_usage) + 0.28 * wealth - 0.35 * rural + 0.2 * coastal + rng.normal(0.0, 0.33, n),
    )
    level = level + _LEVEL_OFFSET[behaviour]
    trend = np.where(is_[CRECIENTE], rng.normal(0.038, 0.012, n), rng.normal(0.0, 0.008, n))
    amplitude = np.where(is_[ESTACIONAL], rng.uniform(0.22, 0.55, n), np.abs(rng.normal(0.0, 0.06, n)))
    phase = rng.uniform(0.0, 12.0, n)  # per record, not calendar-bound: see kon_ray/synth/__init__.py
    electric = spec.usage_unit == "kWh"
    solar = rng.random(n) < np.where(industrial, 0.04, _sigmoid(-4.0 + 0.9 * wealth))
    if electric:
        level = level + np.log(0.62) * solar

    k = np.arange(SERIES_MONTHS, dtype=np.float64)
    season = 1.0 + amplitude[:, None] * np.sin(2 * np.pi * (k[None, :] + phase[:, None]) / 12.0)
    usage = np.exp(level[:, None] + trend[:, None] * (k - 5.5)) * season
    usage *= np.exp(rng.normal(0.0, 0.12, (n, SERIES_MONTHS)))
    usage *= (1.0 + USAGE_SHIFT * d)[:, None]
    shock = rng.random((n, SERIES_MONTHS))
    usage = np.where(shock < 0.006, 0.0, usage)  # a vacant month
    usage = np.where(shock > 0.9975, usage * rng.uniform(4.0, 15.0, (n, SERIES_MONTHS)), usage)  # a spike
    usage = np.round(usage, 0 if electric else 1)
    usage = _null(rng, usage, 0.02)  # an unread meter
    for m in range(SERIES_MONTHS):
        out[f"{spec.usage_prefix}{m + 1:02d}"] = usage[:, m]
    recent = usage[:, SERIES_MONTHS - 6 :]
    seen = np.sum(~np.isnan(recent), axis=1)
    avg6 = np.nansum(recent, axis=1) / np.maximum(seen, 1)
    out["avg_consumption_6m"] = np.round(np.where(seen > 0, avg6, np.exp(level)), 1)

    # bills: fixed charge + unit price x usage (an estimate where the reading is missing), price +10% with drift
    factor = np.where(industrial, 1.2, _PRICE_FACTOR[estrato])
    fixed = np.where(industrial, spec.fixed_charge[1], spec.fixed_charge[0])
    billed = np.where(np.isnan(usage), np.exp(level)[:, None], usage)
    price = spec.unit_price * factor * (1.0 + PRICE_SHIFT * d)
    bill = fixed[:, None] + (price[:, None] * billed) * np.exp(rng.normal(0.0, 0.02, (n, SERIES_MONTHS)))
    refund = rng.random((n, SERIES_MONTHS)) < 0.003
    bill = np.where(refund, -rng.uniform(5_000.0, 150_000.0, (n, SERIES_MONTHS)), bill)
    bill = _null(rng, np.round(bill, 0), 0.005)
    for m in range(SERIES_MONTHS):
        out[f"bill_m{m + 1:02d}"] = bill[:, m]
    monthly_bill = fixed + price * np.exp(level)

    # payment behaviour
    late = np.where(is_[MOROSO], rng.beta(5.0, 3.0, n), rng.beta(1.1, 13.0, n)) + 0.04 * np.maximum(-wealth, 0)
    late = np.clip(late, 0.0, 1.0)
    out["late_payments_12m"] = rng.binomial(12, late).astype(np.int64)
    overdue = np.where(
        is_[MOROSO],
        15.0 + rng.gamma(2.0, 35.0, n),
        np.where(rng.random(n) < 0.8 * late, rng.gamma(1.3, 7.0, n), 0.0),
    ).astype(np.int64)
    out["days_past_due"] = overdue
    balance = monthly_bill * overdue / 30.0 * rng.uniform(0.8, 1.25, n)
    credit = rng.random(n) < 0.02  # a credit in the customer's favour
    out["outstanding_balance"] = np.round(np.where(credit, -rng.uniform(2_000.0, 120_000.0, n), balance), 2)
    since = np.where(is_[MOROSO], overdue + rng.integers(0, 30, n), rng.integers(0, 33, n))
    out["last_payment_date"] = _dates(np.where(rng.random(n) < 0.01, NULL_DATE, record - since))
    out["payment_channel"] = _null(rng, channel, 0.012)
    out["is_autopay"] = ((channel == DEBITO) & (rng.random(n) < 0.9)) | (rng.random(n) < 0.03)
    online = (channel == PSE) | (channel == APP)
    out["paperless_billing"] = rng.random(n) < _sigmoid(-0.4 + 0.8 * wealth + 0.5 * online)

    # meter: a new brand in the drift window, installed recently and often without a recorded age
    brand = _choice(rng, np.array([s for _, s in spec.meter_brands]), n)
    new_brand = rng.random(n) < np.minimum(NEW_BRAND_SHARE * d, 0.6)
    brand = np.where(new_brand, len(spec.meter_brands), brand)
    out["meter_brand"] = _null(rng, brand, 0.05)
    age = np.where(new_brand, rng.uniform(0.0, 0.5, n), rng.gamma(2.2, 3.2, n))
    out["meter_age_years"] = _null(rng, np.round(age, 1), 0.03 + AGE_NULL_SHIFT * np.minimum(d, 4.0))

    tenure = np.where(is_[CRECIENTE], rng.exponential(1.3, n) + 0.1, rng.exponential(8.5, n) + 0.3)
    out["contract_start"] = _dates(record - np.round(np.minimum(tenure, 45.0) * 365.25).astype(np.int64))

    # columns only some datasets have; each is drawn only when the dataset declares it
    if data.has("debt_agreement"):
        out["debt_agreement"] = rng.random(n) < np.where(is_[MOROSO], 0.3, 0.02)
    if data.has("complaints_12m"):
        out["complaints_12m"] = rng.poisson(0.12 + 0.5 * is_[MOROSO] + 0.2 * is_[ESTACIONAL]).astype(np.int64)
    if data.has("billing_cycle"):
        out["billing_cycle"] = cycle
    if data.has("paid_m01"):
        pays = rng.random((n, SERIES_MONTHS)) >= np.where(is_[MOROSO], late, 0.3 * late)[:, None]
        paid = np.where(pays & (bill > 0), np.round(bill * rng.uniform(0.95, 1.0, (n, SERIES_MONTHS)), 0), 0.0)
        paid = np.where(np.isnan(bill), np.nan, paid)
        for m in range(SERIES_MONTHS):
            out[f"paid_m{m + 1:02d}"] = paid[:, m]
    if data.has("subsidy_contribution"):  # negative: a subsidy (estrato 1-3); positive: a contribution
        out["subsidy_contribution"] = np.round((factor - 1.0) * spec.unit_price * np.exp(level), 0)
    if data.has("tax_amount"):
        out["tax_amount"] = _null(rng, np.round(np.where(industrial, 0.06, 0.04) * monthly_bill, 0), 0.02)
    if data.has("adjustments_amount"):
        draw = rng.random(n)
        credit_amount, charge_amount = -rng.lognormal(10.0, 1.0, n), rng.lognormal(9.5, 1.0, n)
        adjust = np.where(draw < 0.10, credit_amount, np.where(draw > 0.96, charge_amount, 0.0))
        out["adjustments_amount"] = np.round(adjust, 0)
    if data.has("reconnection_count"):
        out["reconnection_count"] = rng.poisson(0.04 + 0.6 * (is_[MOROSO] & (overdue > 60))).astype(np.int64)
    if data.has("service_suspended"):
        out["service_suspended"] = (is_[MOROSO] & (overdue > 90) & (rng.random(n) < 0.6)) | (rng.random(n) < 0.005)
    if data.has("has_solar_panels"):
        out["has_solar_panels"] = solar
    if data.has("contracted_power_kw"):
        sized = np.exp(level + rng.normal(0.0, 0.4, n))  # sized at contract time, not on today's use
        steps = _POWER_STEPS[np.minimum(np.searchsorted(_POWER_STEPS, sized / 45.0), len(_POWER_STEPS) - 1)]
        power = np.where(industrial, np.round(sized / 150.0, 1), steps)
        out["contracted_power_kw"] = _null(rng, power, 0.02)
    if data.has("household_size"):
        people = 1.0 + rng.poisson(np.clip(1.5 + 0.15 * wealth, 0.2, None), n)
        out["household_size"] = _null(rng, np.where(industrial, np.nan, people), 0.06)
    if data.has("peak_demand_kw"):
        peak = np.nan_to_num(usage[:, -1], nan=np.exp(level)) / (730.0 * rng.uniform(0.25, 0.6, n))
        out["peak_demand_kw"] = _null(rng, np.round(peak, 2), 0.08)
    if data.has("outage_hours_12m"):
        hours = rng.lognormal(1.2 - 0.4 * _REGION_WEALTH[region], 0.9, n)
        out["outage_hours_12m"] = np.round(np.where(rng.random(n) < 0.45, 0.0, hours), 1)
    if data.has("voltage_level"):
        high = rng.random(n)
        # comercial: BT, 10 % MT; industrial: 60 % MT; the high tier: MT, 30 % AT
        volt = np.where(tier == 0, 1 * (high < 0.1), np.where(tier == 1, 1 * (high < 0.6), 1 + (high < 0.3)))
        out["voltage_level"] = np.where(industrial, volt, 0)
    if data.has("property_area_m2"):
        area = np.where(industrial, rng.lognormal(5.8, 1.0, n), np.exp(4.2 + 0.3 * wealth + rng.normal(0.0, 0.35, n)))
        out["property_area_m2"] = _null(rng, np.round(area, 1), 0.10)
    if data.has("appliance_count"):
        out["appliance_count"] = 1 + rng.poisson(np.clip(1.2 + 0.3 * wealth + 3.0 * industrial, 0.2, None)).astype(
            np.int64
        )
    if data.has("has_gas_heater"):
        out["has_gas_heater"] = rng.random(n) < np.where(industrial, 0.3, _sigmoid(-1.0 + 0.8 * wealth))
    if data.has("pressure_class"):
        out["pressure_class"] = np.where(industrial, np.where(tier == 2, 2, 1 + (rng.random(n) < 0.3)), 0)
    if data.has("last_inspection_date"):
        since_inspection = rng.integers(0, 6 * 365, n)
        missing = rng.random(n) < 0.08
        out["last_inspection_date"] = _dates(np.where(missing, NULL_DATE, record - since_inspection))
        out["inspection_overdue"] = (since_inspection > 5 * 365) | (missing & (rng.random(n) < 0.5))
    return out


def bind(dataset: "DatasetConfig") -> SynthDataset:
    """The dataset config joined with the generator's knobs for it, checked to fit (see the module docstring)."""
    spec = spec_for(dataset.name)
    where = f"conf/dataset/{dataset.name}.yaml"
    if not dataset.columns:
        raise ConfigError(
            f"dataset.columns of {dataset.name} is empty ({where}): kon_ray.synth writes what it declares"
        )
    for key, column in ROLE_COLUMNS.items():
        if getattr(dataset, key) != column:
            raise ConfigError(
                f"dataset.{key}: kon_ray.synth draws {column!r} for it, got {getattr(dataset, key)!r} ({where})"
            )
    industrial = set(spec.industrial_values)
    for value in dataset.industrial_values:
        if value not in industrial:
            raise ConfigError(
                f"dataset.industrial_values: kon_ray.synth draws no tariff_type {value!r} for {dataset.name}"
                f" (its industrial tariffs: {', '.join(spec.industrial_values)}; {where})"
            )
    for value in spec.industrial_values:
        if value not in dataset.industrial_values:
            raise ConfigError(
                f"dataset.industrial_values lacks {value!r}, an industrial tariff_type kon_ray.synth draws for"
                f" {dataset.name}; add it in {where}"
            )
    segment = dataset.segment
    if segment.estrato_column != ESTRATO_COLUMN:
        raise ConfigError(
            f"dataset.segment.estrato_column: kon_ray.synth prices bills by the estrato of {ESTRATO_COLUMN!r},"
            f" got {segment.estrato_column!r} ({where})"
        )
    if len(segment.estrato_thresholds) != 5:
        raise ConfigError(
            f"dataset.segment.estrato_thresholds: kon_ray.synth needs the 5 cut points of estrato 1..6 ({where})"
        )
    data = SynthDataset(
        spec=spec,
        columns=tuple((str(name), str(kind)) for name, kind in dataset.columns.items()),
        estrato_thresholds=tuple(float(t) for t in segment.estrato_thresholds),
    )
    _check_columns(data, where)
    return data


def _check_columns(data: SynthDataset, where: str) -> None:
    """The declared columns are exactly those the generator's rules draw for this dataset, of the declared kinds."""
    probe = generate_block(data, Calendar.ending("2026-10", 24), 1.0, 0, 0)
    cats = categories(data.spec)
    for name, kind in data.columns:
        if name not in probe:
            raise ConfigError(
                f"dataset.columns.{name}: kon_ray.synth has no rule for column {name!r} of {data.name} ({where});"
                " remove it there or add its rule to kon_ray/synth/model.py"
            )
        drawn = drawn_kind(name, probe[name], cats)
        if drawn != kind:
            raise ConfigError(
                f"dataset.columns.{name}: declared {kind}, but kon_ray.synth draws {drawn} values for it ({where})"
            )
    for name, values in probe.items():
        if not data.has(name):
            raise ConfigError(
                f"dataset.columns: {where} does not declare {name!r}, which kon_ray.synth draws for {data.name};"
                f" add `{name}: {drawn_kind(name, values, cats)}`"
            )
