"""The feature list: which features a dataset derives, in order, named and typed, from its declared families.

`build_spec(dataset)` reads the dataset's config (`ctx.config.dataset`, a frozen DatasetConfig) once and returns
a frozen `Spec`: the raw columns each family reads and the ordered output features, each with a kind:

- ``value``: a float feature that is winsorized to the train [p_low, p_high] and has NaN imputed with the train
  median (fitted in state.py);
- ``count``: a flag or a count (0/1, number of months); never NaN, never fitted;
- ``code``: a categorical's ordinal code (int32; 0 = unknown, 1.. = the train vocabulary by frequency);
- ``freq``: a categorical's train frequency (share of train rows with that value; 0 for unknown).

Everything is checked against the declared columns here, before any Ray work: a feature naming a column the
dataset does not declare is a ConfigError naming the key and the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

from kon_ray.errors import ConfigError
from kon_ray.features.config import WINDOW_STATS

if TYPE_CHECKING:  # kon_ray.config imports this package's config: only the type is needed here
    from kon_ray.config import DatasetConfig

KINDS = ("value", "count", "code", "freq")
POPULATION = "population"  # the passthrough column derived from population_column: domestic | industrial
NUMERIC_TYPES = ("int64", "float64", "bool")


@dataclass(frozen=True)
class Series:
    prefix: str  # raw columns <prefix>01 .. <prefix>NN
    base: str  # feature name stem: the prefix without a trailing "_m" (kwh_m -> kwh)
    columns: Tuple[str, ...]  # raw columns oldest first; columns[-1] is the record's own month


@dataclass(frozen=True)
class Spec:
    dataset: str
    id_column: str
    date_column: str
    target_column: str
    population_column: str
    industrial_values: Tuple[str, ...]
    series: Tuple[Series, ...]
    ratios: Tuple[Tuple[Series, Series], ...]
    numeric: Tuple[str, ...]
    flags: Tuple[str, ...]  # bool columns among features.numeric
    categorical: Tuple[str, ...]
    dates: Tuple[str, ...]
    passthrough: Tuple[str, ...]  # raw columns copied as they are (id, date, target, estrato/cluster inputs)
    features: Tuple[Tuple[str, str], ...]  # (name, kind) in output order
    families: Tuple[str, ...]
    windows: Tuple[int, ...]
    growth_lags: Tuple[int, ...]
    summer_months: Tuple[int, ...]
    winter_months: Tuple[int, ...]
    clip_quantiles: Tuple[float, float] | None
    impute: bool
    max_categories: int
    fit_sample_rows: int
    batch_rows: int

    @property
    def names(self) -> List[str]:
        return [name for name, _ in self.features]

    def of_kind(self, *kinds: str) -> List[str]:
        return [name for name, kind in self.features if kind in kinds]

    @property
    def raw_columns(self) -> List[str]:
        """Every raw column the transform reads (and nothing else: the Parquet read selects these)."""
        wanted = [self.id_column, self.date_column, self.target_column, self.population_column]
        for series in self.series:
            wanted += series.columns
        wanted += [*self.numeric, *self.flags, *self.categorical, *self.dates, *self.passthrough]
        return list(dict.fromkeys(wanted))


def series_base(prefix: str) -> str:
    stem = prefix[:-2] if prefix.endswith("_m") and len(prefix) > 2 else prefix.rstrip("_")
    return stem or prefix


def build_spec(dataset: "DatasetConfig") -> Spec:
    """The Spec for a dataset's config; ConfigError naming the key when a column is not declared."""
    features = dataset.features
    declared: Dict[str, str] = dict(dataset.columns)
    name = dataset.name

    def need(key: str, column: str, types: Sequence[str] | None = None) -> None:
        if declared and column not in declared:
            raise ConfigError(f"dataset {name}: {key} names column {column!r}, which dataset.columns does not declare")
        if declared and types and declared[column] not in types:
            raise ConfigError(
                f"dataset {name}: {key} column {column!r} is declared {declared[column]}; expected {'/'.join(types)}"
            )

    for key in ("id_column", "date_column", "target_column", "population_column"):
        need(f"dataset.{key}", getattr(dataset, key))
    need("dataset.date_column", dataset.date_column, ("date",))

    months = features.series_months
    series = []
    for prefix in features.monthly_series:
        columns = tuple(f"{prefix}{k:02d}" for k in range(1, months + 1))
        for column in columns:
            need("features.monthly_series", column, ("float64", "int64"))
        series.append(Series(prefix=prefix, base=series_base(prefix), columns=columns))
    by_prefix = {s.prefix: s for s in series}
    if len({s.base for s in series}) != len(series):
        raise ConfigError(f"dataset {name}: features.monthly_series prefixes give the same feature stem twice")
    ratios = tuple((by_prefix[a], by_prefix[b]) for a, b in features.ratios)

    numeric: list[str] = []
    flags: list[str] = []
    for column in features.numeric:
        need("features.numeric", column, NUMERIC_TYPES)
        (flags if declared.get(column) == "bool" else numeric).append(column)
    for column in features.categorical:
        need("features.categorical", column)
    for column in features.dates:
        need("features.dates", column, ("date", "string"))

    segment = dataset.segment
    passthrough = [dataset.id_column, dataset.date_column, dataset.target_column]
    if segment.estrato_column:
        need("segment.estrato_column", segment.estrato_column)
        passthrough.append(segment.estrato_column)
    for column in segment.cluster_features:
        need("segment.cluster_features", column)
        passthrough.append(column)

    clip = features.clip_quantiles
    spec = Spec(
        dataset=name,
        id_column=dataset.id_column,
        date_column=dataset.date_column,
        target_column=dataset.target_column,
        population_column=dataset.population_column,
        industrial_values=tuple(dataset.industrial_values),
        series=tuple(series),
        ratios=ratios,
        numeric=tuple(numeric),
        flags=tuple(flags),
        categorical=tuple(features.categorical),
        dates=tuple(features.dates),
        passthrough=tuple(dict.fromkeys(passthrough)),
        features=(),
        families=tuple(features.series_families),
        windows=tuple(features.windows),
        growth_lags=tuple(features.growth_lags),
        summer_months=tuple(features.summer_months),
        winter_months=tuple(features.winter_months),
        clip_quantiles=(float(clip[0]), float(clip[1])) if clip is not None else None,
        impute=features.impute,
        max_categories=features.max_categories,
        fit_sample_rows=features.fit_sample_rows,
        batch_rows=features.batch_rows,
    )
    named = _feature_list(spec, months)
    clash = sorted({n for n, _ in named} & {*spec.passthrough, POPULATION, "split"})
    if clash:
        raise ConfigError(f"dataset {name}: feature {clash[0]!r} has the name of a passthrough column; rename it")
    return _replace_features(spec, named)


def _replace_features(spec: Spec, named: List[Tuple[str, str]]) -> Spec:
    from dataclasses import replace

    return replace(spec, features=tuple(named))


def _feature_list(spec: Spec, months: int) -> List[Tuple[str, str]]:
    """Every output feature, (name, kind), in the order the transform emits them."""
    out: List[Tuple[str, str]] = []
    lag = [f"{k:02d}" for k in range(1, months + 1)]  # lag01 = the record's own month
    for s in spec.series:
        b = s.base
        if "lags" in spec.families:
            out += [(f"{b}_lag{k}", "value") for k in lag]
        if "log_lags" in spec.families:
            out += [(f"{b}_lag{k}_log", "value") for k in lag]
        if "diffs" in spec.families:
            out += [(f"{b}_diff{k}", "value") for k in lag[:-1]]
        if "windows" in spec.families:
            out += [(f"{b}_{stat}{w:02d}", "value") for w in spec.windows for stat in WINDOW_STATS]
        if "slopes" in spec.families:
            out += [(f"{b}_slope{w:02d}", "value") for w in spec.windows]
        if "growth" in spec.families:
            out += [(f"{b}_growth{k:02d}", "value") for k in spec.growth_lags]
        if "seasonality" in spec.families:
            out += [(f"{b}_{n}", "value") for n in ("amplitude", "cv", "summer_winter", "peak_month", "trough_month")]
        if "quality" in spec.families:
            out += [(f"{b}_{n}", "count") for n in ("n_missing", "n_negative", "n_zero")]
        if "shares" in spec.families:
            out += [(f"{b}_share{k}", "value") for k in lag] + [(f"{b}_recent_share", "value")]
    for num, den in spec.ratios:
        stem = f"ratio_{num.base}_{den.base}"
        out += [(f"{stem}_lag{k}", "value") for k in lag]
        out += [(f"{stem}_sum{w:02d}", "value") for w in spec.windows]
    for column in spec.numeric:
        out += [
            (f"num_{column}", "value"),
            (f"num_{column}_log", "value"),
            (f"num_{column}_missing", "count"),
            (f"num_{column}_negative", "count"),
        ]
    for column in spec.flags:
        out += [(f"flag_{column}", "value"), (f"flag_{column}_missing", "count")]
    for column in spec.categorical:
        out += [(f"cat_{column}", "code"), (f"cat_{column}_freq", "freq")]
    for column in spec.dates:
        out += [
            (f"date_{column}_months", "value"),
            (f"date_{column}_year", "value"),
            (f"date_{column}_month", "value"),
            (f"date_{column}_invalid", "count"),
        ]
    out += [(name, "value") for name in RECORD_CALENDAR]
    return out


RECORD_CALENDAR = ("rec_month", "rec_quarter", "rec_month_sin", "rec_month_cos")


def calendar_features(dates: List[str]) -> List[str]:
    """Features that say where a date falls in the calendar (record month, a date's year and month). Between a
    reference window and a later current window they shift by construction, so drift checks skip them."""
    return list(RECORD_CALENDAR) + [f"date_{c}_{part}" for c in dates for part in ("year", "month")]
