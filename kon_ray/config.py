"""The run's configuration: frozen dataclass schemas registered in Hydra's ConfigStore, and their validation.

Each stage owns the schema of its own group (`kon_ray/<stage>/config.py`); this module assembles them into
`KonConfig`. YAML under `conf/` holds only values. `load_config` turns a composed DictConfig into the frozen
dataclasses, so a bad value fails here, before Ray starts, with a `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import omegaconf.dictconfig
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kon_ray.cluster.config import CLUSTER_SCHEMAS, ClusterConfig
from kon_ray.drift.config import DriftConfig
from kon_ray.errors import ConfigError
from kon_ray.features.config import FeatureConfig, SplitConfig
from kon_ray.performance.config import InferPerformanceConfig
from kon_ray.segment.config import SegmentConfig
from kon_ray.stages import STAGE_ORDER  # the registry of stages (re-exported for the CLI and tests)
from kon_ray.synth.config import SynthConfig
from kon_ray.tracking.config import TrackingConfig
from kon_ray.train.config import ModelConfig

# OmegaConf marks a frozen dataclass's node read-only, which would stop YAML files and command-line overrides
# from composing onto the schema at all. Composition needs writable nodes; the result is still type-checked
# against the schema, and `load_config` turns it into the frozen dataclass instances the code uses.
# Why this hook and not the public API: `OmegaConf.set_readonly(schema, False)` on the stored schemas is not enough,
# because a nested dataclass field (`model: ModelConfig`) is re-created read-only from its type while Hydra merges
# the group into it (ReadonlyConfigError on model.max_depth, tried); and a second, unfrozen copy of every schema
# would be the duplication the frozen dataclasses exist to avoid.
omegaconf.dictconfig.is_structured_config_frozen = lambda obj: False

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

# The pipeline's stages in the only order they run. `stages=[...]` picks a subset; order is always this one.

# Declared raw column types (conf/dataset/*.yaml `columns:`), checked against the Parquet schema at ingest.
COLUMN_TYPES = ("int64", "float64", "string", "bool", "date")

POPULATIONS = ("domestic", "industrial")


@dataclass(frozen=True)
class DatasetConfig:
    name: str = MISSING
    path: str = MISSING  # Parquet file or folder of parts, local or s3://
    sample_rows: int = 20_000  # rows the generator writes by default (make run)
    full_rows: int = 1_000_000  # rows of the full-scale dataset
    id_column: str = "customer_id"
    date_column: str = "record_date"
    target_column: str = "segment"
    population_column: str = "tariff_type"
    industrial_values: List[str] = field(default_factory=list)  # population_column values that are industrial
    columns: Dict[str, str] = field(default_factory=dict)  # the declared raw schema: column -> type
    features: FeatureConfig = field(default_factory=FeatureConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)

    def __post_init__(self) -> None:
        for column, kind in self.columns.items():
            if kind not in COLUMN_TYPES:
                raise ConfigError(
                    f"dataset.columns.{column}: unknown type {kind!r}; expected one of {', '.join(COLUMN_TYPES)}"
                )
        for key in ("id_column", "date_column", "target_column", "population_column"):
            column = getattr(self, key)
            if self.columns and column not in self.columns:
                raise ConfigError(f"dataset.{key}: column {column!r} is not declared in dataset.columns")
        for key in ("sample_rows", "full_rows"):
            if getattr(self, key) < 1:
                raise ConfigError(f"dataset.{key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class KonConfig:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    # The base schema: conf/cluster/<kind>.yaml composes its kind's (LocalCluster, RayCluster...) into it, and
    # `load_config` returns that kind's dataclass (KINDS below; kon_ray/cluster/config.py).
    cluster: ClusterConfig = MISSING
    drift: DriftConfig = MISSING
    tracking: TrackingConfig = MISSING
    split: SplitConfig = field(default_factory=SplitConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    performance: InferPerformanceConfig = field(default_factory=InferPerformanceConfig)  # infer's label-free estimate
    stages: List[str] = field(default_factory=lambda: list(STAGE_ORDER))
    output_dir: str = MISSING  # the run folder: Hydra's run dir by default, or an s3:// prefix
    # Where stage outputs are kept by key (kon_ray/manifest.py) for reuse; null = one cache per dataset,
    # `outputs/<dataset>/.cache` (`.cache` beside the run folder; a sweep's jobs use the single runs' one, so a sweep
    # and a single run reuse each other's stages). `reuse=false` recomputes every stage.
    cache_dir: Optional[str] = None
    reuse: bool = True
    seed: int = 42

    def __post_init__(self) -> None:
        unknown = [stage for stage in self.stages if stage not in STAGE_ORDER]
        if unknown:
            raise ConfigError(f"stages: unknown stage {unknown[0]!r}; known stages: {', '.join(STAGE_ORDER)}")
        if not self.stages:
            raise ConfigError(f"stages is empty; pick from {', '.join(STAGE_ORDER)}")


def register_configs() -> None:
    """Make the schemas known to Hydra, so that `defaults: [base_<group>]` in a YAML file validates its values."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=_schema(KonConfig))
    store.store(group="dataset", name="base_dataset", node=_schema(DatasetConfig))
    store.store(group="model", name="base_model", node=_schema(ModelConfig))
    for kind, cluster_schema in CLUSTER_SCHEMAS.items():  # one schema per kind: conf/cluster/<kind>.yaml
        store.store(group="cluster", name=f"base_cluster_{kind}", node=_schema(cluster_schema))
    store.store(group="drift", name="base_drift", node=_schema(DriftConfig))
    store.store(group="tracking", name="base_tracking", node=_schema(TrackingConfig))


def _schema(dataclass_type: type) -> DictConfig:
    return OmegaConf.structured(dataclass_type)


def dataset_choices() -> List[str]:
    return sorted(path.stem for path in (CONF_DIR / "dataset").glob("*.yaml"))


def no_dataset_message(command: str = "kon_ray.run") -> str:
    return (
        f"no dataset chosen: add +dataset=NAME, one of {', '.join(dataset_choices())}"
        f" (e.g. python -m {command} +dataset=POLA)"
    )


def load_config(cfg: DictConfig) -> KonConfig:
    """Validate a composed config and return it as frozen dataclasses; raise ConfigError naming the bad key."""
    config: KonConfig = load_root(cfg, KonConfig, "kon_ray.run")
    return config


def load_root(cfg: DictConfig, schema: type, command: str) -> Any:
    """`load_config` for any command's root dataclass `schema` (the generator's: kon_ray/synth/command.py);
    `command` names it in the no-dataset message."""
    if "dataset" not in cfg or OmegaConf.is_missing(cfg, "dataset"):
        raise ConfigError(no_dataset_message(command))
    return load_schema(cfg, schema)


def load_schema(cfg: DictConfig, schema: type) -> Any:
    """The composed `cfg` as an instance of the frozen dataclass `schema` (every command's root: the pipeline's,
    the generator's, the drift check's and history's), or one ConfigError naming the key: an unknown key (with the
    closest valid one), a key without a value, a value of the wrong type."""
    check_known_keys(cfg, schema)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"config key {missing[0]} has no value; set it with {missing[0]}=...")
    try:
        config = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"config key {key}: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    if not isinstance(config, schema):
        raise ConfigError(f"the composed config does not follow the {schema.__name__} schema")
    return config


# ---- keys and types of a schema (a frozen dataclass), for messages that name the key and the fix ----------------

# A field typed with a base schema holds one of its kinds, each a subclass that a config group's file chooses:
# `cluster` (ClusterConfig) is LocalCluster, RayCluster, Ec2Cluster or SageMakerCluster, whichever schema
# conf/cluster/<kind>.yaml names. Hydra merges the chosen subclass into the base-typed field (OmegaConf 2.3 retypes
# the node; a kind that is not a subclass of the field's type is refused), so the composed config, its key and type
# errors and `load_config`'s result are the chosen kind's, with no dispatch on `kind` here. (A loosely typed field
# built by `kind` in load_config would leave the YAML and the command line unchecked until then.) Where the choice
# is not known yet the base stands for every kind's keys; `narrowed` / `composed_schema` give the chosen kind's.
KINDS: Dict[type, Dict[str, type]] = {ClusterConfig: dict(CLUSTER_SCHEMAS)}


def _optional_of(hint: Any) -> Any:
    """`X` for `Optional[X]`, else `hint`."""
    if typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _fields(schema: type) -> Dict[str, Any]:
    if schema in KINDS:  # a base schema: the keys of every kind (the first kind's type where kinds share a key)
        merged: Dict[str, Any] = {}
        for kind in KINDS[schema].values():
            for name, hint in _fields(kind).items():
                merged.setdefault(name, hint)
        return merged
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def narrowed(schema: type, chosen: Mapping[str, type]) -> type:
    """`schema` with each field named in `chosen` typed as the given kind (a subclass of its declared base schema):
    the schema that a config composed with those choices follows, for checking its keys (never instantiated). A
    subclass rather than a parameter, so that every key walker here (schema_type, schema_keys, _first_unknown) sees
    the kind as it is."""
    if not chosen:
        return schema
    return dataclasses.make_dataclass(
        schema.__name__,
        [(name, kind, field(default=MISSING)) for name, kind in chosen.items()],
        bases=(schema,),
        frozen=True,
    )


def kind_fields(schema: type) -> List[str]:
    """The fields of `schema` that hold one of several kinds (`cluster`)."""
    return [name for name, hint in _fields(schema).items() if _optional_of(hint) in KINDS]


def composed_schema(cfg: DictConfig, schema: type) -> type:
    """`schema` narrowed to the kinds `cfg` was composed with (its `cluster` node's schema, e.g. RayCluster)."""
    chosen: Dict[str, type] = {}
    for name in kind_fields(schema):
        base = _optional_of(_fields(schema)[name])
        if name in cfg and not OmegaConf.is_missing(cfg, name):
            kind = OmegaConf.get_type(cfg, name)
            if isinstance(kind, type) and kind is not base and issubclass(kind, base):
                chosen[name] = kind
    return narrowed(schema, chosen)


def _another_kinds_key(schema: type, parent: str, name: str) -> Optional[str]:
    """"a key of cluster=sagemaker, not of cluster=local (whose keys are ...)" when `parent` holds one kind of a base
    schema (KINDS) and other kinds have `name`; else None."""
    try:
        hint = _optional_of(schema_type(schema, parent))
    except KeyError:
        return None
    for base, kinds in KINDS.items():
        if isinstance(hint, type) and hint is not base and issubclass(hint, base):
            others = [kind for kind, other in kinds.items() if other is not hint and name in _fields(other)]
            if not others:
                return None
            chosen = next((kind for kind, other in kinds.items() if other is hint), hint.__name__)
            return (f"a key of {parent}={'|'.join(others)}, not of {parent}={chosen}"
                    f" (whose keys are {', '.join(_fields(hint))})")
    return None


def schema_type(schema: type, key: str) -> Any:
    """The declared type of the dotted `key` in the dataclass `schema`; KeyError when the schema has no such key.

    Below a `Dict[str, X]` field every name is a key (`dataset.columns.new_col`, `drift.column_types.kwh_m01`),
    below a `List[X]` field every index."""
    hint: Any = schema
    for part in key.split("."):
        hint = _optional_of(hint)
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint):
            fields = _fields(hint)  # type: ignore[arg-type]
            if part not in fields:
                raise KeyError(key)
            hint = fields[part]
        elif origin in (dict, typing.Dict) or hint in (dict, typing.Dict):
            hint = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        elif (origin in (list, tuple) or hint in (list, tuple)) and part.isdigit():
            hint = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        elif hint is not Any:
            raise KeyError(key)
    return hint


def schema_keys(schema: type, prefix: str = "") -> List[str]:
    """Every dotted key of the schema (nested dataclasses included; a Dict or List field is one key)."""
    keys: List[str] = []
    for name, hint in _fields(schema).items():
        keys.append(prefix + name)
        inner = _optional_of(hint)
        if dataclasses.is_dataclass(inner):
            keys.extend(schema_keys(inner, f"{prefix}{name}."))  # type: ignore[arg-type]
    return keys


def unknown_key_error(key: str, schema: type) -> Optional[ConfigError]:
    """None when `key` is in the schema; else the error naming it and the closest valid key."""
    try:
        schema_type(schema, key)
        return None
    except KeyError:
        pass
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):  # below a single value: `model.max_depth.x`
        ancestor = ".".join(parts[:end])
        try:
            hint = schema_type(schema, ancestor)
        except KeyError:
            continue
        if not dataclasses.is_dataclass(_optional_of(hint)):
            return ConfigError(f"unknown config key {key}: {ancestor} is {describe_type(hint)}, not a group of keys")
        break
    keys = schema_keys(schema)
    parent, _, name = key.rpartition(".")
    elsewhere = _another_kinds_key(schema, parent, name) if parent else None
    if elsewhere:  # `cluster.instance_count` under cluster=local
        return ConfigError(f"unknown config key {key}: {elsewhere}")
    if parent == "" or parent in keys:  # a typo in the last part: compare with the names beside it
        below = [k[len(parent) + 1 :] if parent else k for k in keys if not parent or k.startswith(parent + ".")]
        siblings = [other for other in below if "." not in other]
        close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
        if close:
            return ConfigError(f"unknown config key {key}: did you mean {parent + '.' if parent else ''}{close[0]}?")
        where = f"{parent} has" if parent else "the config's keys are"
        return ConfigError(f"unknown config key {key}: {where} {', '.join(siblings)}")
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)  # a typo further up: `modle.max_depth`
    if close:
        return ConfigError(f"unknown config key {key}: did you mean {close[0]}?")
    top = [k for k in keys if "." not in k]
    return ConfigError(f"unknown config key {key}: the config's keys are {', '.join(top)}")


def describe_type(hint: Any) -> str:
    """A schema type in words, for "expected ..." messages."""
    inner = _optional_of(hint)
    suffix = " or null" if inner is not hint else ""
    origin = typing.get_origin(inner) or inner
    words = {
        bool: "true or false",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "a list, e.g. [a,b]",
        tuple: "a list, e.g. [a,b]",
        dict: "a mapping, e.g. {a: b}",
    }
    if isinstance(inner, type) and dataclasses.is_dataclass(inner):
        return f"a group of keys ({', '.join(_fields(inner))})" + suffix
    return str(words.get(origin, getattr(inner, "__name__", str(inner)))) + suffix


def check_known_keys(cfg: DictConfig, schema: type) -> None:
    """Every key of a composed config must be in the schema: a key added with `+` (Hydra lets `+model.x=1` through)
    would otherwise fail much later, as a FrozenInstanceError, when the frozen dataclass is built. A field that holds
    one of several kinds (`cluster`) is checked against the kind composed."""
    schema = composed_schema(cfg, schema)
    unknown = _first_unknown(OmegaConf.to_container(cfg, resolve=False), schema, "")
    if unknown:
        raise unknown_key_error(unknown, schema) or ConfigError(f"unknown config key {unknown}")


def _first_unknown(node: Any, hint: Any, prefix: str) -> Optional[str]:
    hint = _optional_of(hint)
    if not (isinstance(node, dict) and dataclasses.is_dataclass(hint)):
        return None  # values below a Dict or List field, and scalars, are the type checker's business
    fields = _fields(hint)  # type: ignore[arg-type]
    for name, value in node.items():
        if name not in fields:
            return f"{prefix}{name}"
        found = _first_unknown(value, fields[name], f"{prefix}{name}.")
        if found:
            return found
    return None


def to_plain(cfg: DictConfig) -> Dict[str, Any]:
    """The only form of the config that crosses into Ray: plain, resolved containers."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
