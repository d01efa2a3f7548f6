"""The sweep's command line, read before anything starts (pure: no Ray, no MLflow).

`python -m kon_ray.sweep +dataset=POLA model.max_depth=4,6 'model.eta=interval(0.01,0.3)' sweep.search=optuna`:
Hydra's own override grammar (`a,b`, `choice(a,b)`, `range(3,10)`, `interval(0.01,0.3)`, `tag(log,interval(...))`)
reads each argument; a swept one becomes a `Dimension` of the trials' space, `sweep.*` arguments configure the sweep,
the rest compose the run's config as they would for `python -m kon_ray.run`. Trials vary `model.*` keys only: the
stages before training (ingest, preprocess, segment, drift) are computed once for the whole sweep, so a swept key
they read would make the trials disagree about their inputs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from kon_ray.errors import ConfigError
from kon_ray.sweep.config import SweepConfig
from kon_ray.train.config import ModelConfig

CHOICE, RANGE, INTERVAL = "choice", "range", "interval"
NUMERIC = (int, float)
# model.* keys a trial cannot vary: the sweep reads each population's rows and validation split once
NOT_TRIAL_KEYS = {
    "validation_fraction": "the validation split is read once per sweep",
    "min_rows_per_class": "the populations are checked once per sweep",
}


@dataclass(frozen=True)
class Dimension:
    """One swept `model.<key>`: a list of values (choice, or an integer/float range) or an interval."""

    key: str  # the ModelConfig field
    kind: str  # choice | range | interval
    values: Tuple[Any, ...] = ()  # choice and range: every value, in order, of the key's type
    low: float = math.nan  # interval bounds
    high: float = math.nan
    log: bool = False  # interval tagged `log`: sampled on a log scale
    integer: bool = False  # the key is an int

    @property
    def override(self) -> str:
        return f"model.{self.key}"


@dataclass(frozen=True)
class CommandLine:
    """The sweep's command line, split: what composes the config, what configures the sweep, what varies."""

    fixed: Tuple[str, ...]  # overrides for composing the run's config (kon_ray.run's command line, unswept)
    sweep: Dict[str, Any]  # sweep.<key> -> its value as Hydra parsed it (quotes and escapes undone)
    dimensions: Tuple[Dimension, ...]


def _key_type(key: str) -> type:
    """The ModelConfig field's type (annotations are strings under `from __future__ import annotations`)."""
    hint: Any = {f.name: f.type for f in dataclasses.fields(ModelConfig)}[key]
    types: Dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
    return types[hint] if isinstance(hint, str) else hint


def _convert(key: str, value: Any, kind: type) -> Any:
    """A swept value as the key's type; a ConfigError naming the key otherwise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, NUMERIC) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        return str(value)
    words = {int: "an integer", float: "a float", bool: "true or false", str: "a string"}
    raise ConfigError(f"model.{key}: expected {words.get(kind, kind)}, got {value!r}")


def parse_command_line(args: Sequence[str]) -> CommandLine:
    """Split `args` (the command line without flags) into fixed overrides, sweep.* settings and the dimensions."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    fixed: List[str] = []
    sweep: Dict[str, Any] = {}
    dimensions: List[Dimension] = []
    parser = OverridesParser.create()
    for text in args:
        try:
            override = parser.parse_override(text)
        except HydraException as exc:
            raise ConfigError(f"{text}: {str(exc).splitlines()[0]}") from None
        key = override.key_or_group
        if key.startswith("sweep."):
            if override.is_sweep_override():
                raise ConfigError(f"{text}: sweep.* keys take one value")
            # the value, not Hydra's text of it, which escapes ':' (sweep.dir=s3://... would keep a backslash)
            sweep[key[len("sweep."):]] = override.value()
            continue
        if not override.is_sweep_override():
            fixed.append(text)
            continue
        if not key.startswith("model.") or override.package is not None or key.count(".") != 1:
            raise ConfigError(
                f"{key}: trials vary model.* keys only (the stages before training are computed once per sweep); "
                f"sweep {key} with python -m kon_ray.run -m")
        name = key[len("model."):]
        if name not in {f.name for f in dataclasses.fields(ModelConfig)}:
            continue  # the caller's key check names the closest key (kon_ray.cli preflight)
        kind = _key_type(name)
        value = override.value()
        numeric = kind in NUMERIC
        if isinstance(value, (RangeSweep, IntervalSweep)) and not numeric:
            raise ConfigError(f"{key}: {type(value).__name__.replace('Sweep', '').lower()}(...) needs a numeric key "
                              f"and {key} takes {'true or false' if kind is bool else 'a string'}; list its values "
                              f"instead: {key}=a,b")
        if isinstance(value, IntervalSweep):
            assert value.start is not None and value.end is not None
            if not value.start < value.end:
                raise ConfigError(f"{key}: interval({value.start},{value.end}) is empty")
            dimensions.append(Dimension(name, INTERVAL, low=float(value.start), high=float(value.end),
                                        log="log" in (value.tags or set()), integer=kind is int))
        elif isinstance(value, RangeSweep):
            values = tuple(_convert(name, v, kind) for v in override.sweep_iterator())
            if not values:
                raise ConfigError(f"{key}: the range has no values")
            dimensions.append(Dimension(name, RANGE, values=values, integer=kind is int))
        elif isinstance(value, ChoiceSweep):
            values = tuple(_convert(name, v, kind) for v in override.sweep_iterator())
            dimensions.append(Dimension(name, CHOICE, values=values, integer=kind is int))
        else:  # glob: only for config groups
            raise ConfigError(f"{text}: not a sweep of a model.* key")
    seen = [d.key for d in dimensions]
    twice = {k for k in seen if seen.count(k) > 1}
    if twice:
        raise ConfigError(f"model.{sorted(twice)[0]} is swept twice on the command line")
    return CommandLine(tuple(fixed), sweep, tuple(dimensions))


def check_space(dimensions: Sequence[Dimension], sweep: SweepConfig, model: ModelConfig) -> None:
    """Before anything starts: the search can use these dimensions, and every value (or both ends of an interval)
    makes a valid model config (ModelConfig's own checks, naming the key)."""
    if not dimensions:
        raise ConfigError("nothing to sweep: give at least one model.* key several values, e.g. model.max_depth=4,6 "
                          "or 'model.eta=interval(0.01,0.3)' with sweep.search=optuna")
    for dim in dimensions:
        if dim.key in NOT_TRIAL_KEYS:
            raise ConfigError(f"{dim.override} cannot vary between trials ({NOT_TRIAL_KEYS[dim.key]}); sweep it with "
                              "python -m kon_ray.run -m")
        if sweep.search == "grid" and dim.kind == INTERVAL:
            raise ConfigError(f"{dim.override}=interval(...) has no grid: list values ({dim.override}=a,b), or "
                              "search it with sweep.search=optuna sweep.trials=N")
        ends = dim.values if dim.kind != INTERVAL else (dim.low, dim.high)
        for value in ends:
            changes: Dict[str, Any] = {dim.key: int(value) if dim.integer else value}
            dataclasses.replace(model, **changes)


def grid(dimensions: Sequence[Dimension]) -> List[Dict[str, Any]]:
    """Every point of the grid, the first dimension varying slowest (Hydra's basic sweeper's order)."""
    names = [d.key for d in dimensions]
    return [dict(zip(names, combo)) for combo in itertools.product(*(d.values for d in dimensions))]


def model_for(base: ModelConfig, point: Mapping[str, Any]) -> ModelConfig:
    """The trial's model config: the composed one with the point's values."""
    return dataclasses.replace(base, **dict(point))


def reproduce_command(fixed: Sequence[str], point: Mapping[str, Any]) -> str:
    """The one `python -m kon_ray.run` command line that trains a trial's configuration as a single run."""
    kept = [o for o in fixed if o.split("=", 1)[0].lstrip("+~") not in {f"model.{k}" for k in point}]
    values = [f"model.{k}={_format(v)}" for k, v in point.items()]
    return " ".join(["python -m kon_ray.run", *(shlex.quote(a) for a in kept + values)])


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)
