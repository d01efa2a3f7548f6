"""Pure helpers that turn the config and the stages' metrics into MLflow params and metric names (no MLflow here).

- `config_params`: the composed config flattened to dot keys (`model.max_depth`), lists and dicts that end a branch
  as JSON, values cut to MLflow's 6000-character limit, and secrets redacted to `***`.
- `stage_metric_names`: the names a stage's metrics are logged under. A key the stage already namespaced
  (`psi/kwh`, `domestic/macro_f1`) is kept as it is; a bare key (`rows`, `cached`) gets the stage as prefix
  (`ingest/rows`, `drift/cached`); a namespaced key that an earlier stage already used is prefixed with the stage
  too (`infer/domestic/macro_f1` beside train's `domestic/macro_f1`), so nothing is overwritten.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, Iterable, List, Mapping, MutableSet, Tuple

from kon_ray import secrets

MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_KEY = 250  # MLflow's limit on param and metric key length
REDACTED = secrets.MASK
# MLflow's names allow alphanumerics, underscores, dashes, periods, spaces, colons and slashes.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")


def registered_name(dataset: str, population: str) -> str:
    """The model registry name of a dataset's population model: `<dataset>-<population>` (`POLA-domestic`)."""
    return f"{dataset}-{population}"


def is_secret(key: str) -> bool:
    """A key that names a secret (kon_ray/secrets.py, the project's one rule): `password`, `db_password`,
    `tracking.token`, `api_key`... but not `id_column` or `tokenizer`."""
    return secrets.is_secret_key(key)


def redact_overrides(overrides: Any) -> List[str]:
    """Hydra overrides (a list, or Hydra's `overrides.task` node, read without resolving `${...}` in them) with
    secret values masked (`tracking.token=***`) and URL passwords hidden."""
    if not isinstance(overrides, (list, tuple)):
        from omegaconf import OmegaConf

        overrides = OmegaConf.to_container(overrides, resolve=False)
    clean = []
    for override in overrides:
        key, sep, value = override.partition("=")
        clean.append(f"{key}={REDACTED}" if sep and is_secret(key.lstrip("+~")) else secrets.redact_text(override))
    return clean


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested mappings to dot keys; lists stay leaves."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def param_value(value: Any) -> str:
    """A param value as MLflow stores it: strings as they are, everything else as JSON, at most 6000 chars."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = secrets.redact_text(text)  # user:password@ in a URL
    if len(text) > MAX_PARAM_VALUE:
        marker = "...[truncated]"
        text = text[: MAX_PARAM_VALUE - len(marker)] + marker
    return text


def config_params(plain: Mapping[str, Any]) -> Dict[str, str]:
    """The config as MLflow params: dot keys, JSON lists, truncated values, secrets as ***."""
    params = {}
    for key, value in flatten(plain).items():
        params[key[:MAX_KEY]] = REDACTED if is_secret(key) and value not in (None, "") else param_value(value)
    return params


def safe_name(name: str) -> str:
    """A metric or param name MLflow accepts (unsafe characters become `_`)."""
    return _UNSAFE.sub("_", name)[:MAX_KEY]


def number(value: Any) -> float | None:
    """A metric value, or None for what is not a finite-or-nan number (strings, lists, None)."""
    if isinstance(value, bool):
        return float(value)
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if not math.isinf(value) else None
    return None


def stage_metric_names(stage: str, metrics: Mapping[str, Any], seen: MutableSet[str]) -> List[Tuple[str, float]]:
    """(name, value) for each numeric metric of `stage`, named as the module docstring says; `seen` is updated."""
    items = []
    for key, value in metrics.items():
        as_number = number(value)
        if as_number is None:
            continue
        name = safe_name(key if "/" in key else f"{stage}/{key}")
        if name in seen and not name.startswith(f"{stage}/"):
            name = safe_name(f"{stage}/{key}")
        seen.add(name)
        items.append((name, as_number))
    return items


def run_metric_names(results: Mapping[str, Mapping[str, Any]]) -> Dict[str, float]:
    """All stages' metrics of one run as they are named in MLflow (the sweep summary reads these)."""
    seen: set = set()
    flat: Dict[str, float] = {}
    for stage, metrics in results.items():
        flat.update(stage_metric_names(stage, metrics or {}, seen))
    return flat


def cached_stages(results: Mapping[str, Mapping[str, Any]]) -> List[str]:
    return [stage for stage, metrics in results.items() if (metrics or {}).get("cached")]


def best_metric_keys(best_metric: str, populations: Iterable[str]) -> Dict[str, str]:
    """population -> metric name that ranks it; a best_metric with a `/` is one key for the whole run ("all")."""
    if "/" in best_metric:
        return {"all": best_metric}
    return {population: f"{population}/{best_metric}" for population in populations}
