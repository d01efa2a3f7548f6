"""Which inputs decide a stage's outputs, as one key per stage.

A stage's key hashes the config sections that affect it, the keys of the stages it reads, and (for ingest) the
data's fingerprint (`kon_ray.ingest.data_fingerprint`: names, sizes and modification times of the input files, the
value ingest.json and MLflow record). Equal keys mean equal outputs, so a published stage with a matching manifest
is reused instead of recomputed: after an interruption (re-running the same command redoes only what is missing)
and across the jobs of a sweep (changing `model.*` redoes train and infer, never ingest, preprocess or drift).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Dict, Mapping

from kon_ray import storage
from kon_ray.stages import STAGES

MANIFEST = "_manifest.json"


def select(config: Any, path: str) -> Any:
    """The value at a dot path of the frozen config (`model`, `dataset.segment`, `cluster.train_workers`), as
    plain JSON-able data (a section becomes its dict of fields)."""
    node: Any = config
    for part in path.split("."):
        node = getattr(node, part)
    return dataclasses.asdict(node) if dataclasses.is_dataclass(node) and not isinstance(node, type) else node


def stage_keys(config: Any, data_fingerprint: str, extra: Mapping[str, Any] | None = None) -> Dict[str, str]:
    """The key of every stage, in pipeline order (a stage's key covers everything upstream of it): the config
    paths and inputs its registry entry declares (kon_ray/stages.py), the data's fingerprint
    (`kon_ray.ingest.data_fingerprint`) for the stage that reads the data, and `extra[stage]` (what else decides
    its outputs, from its `key_material` hook)."""
    keys: Dict[str, str] = {}
    for entry in STAGES:
        material = {
            "stage": entry.name,
            "config": {path: select(config, path) for path in entry.config},
            "inputs": {name: keys[name] for name in entry.inputs},
            "data": data_fingerprint if not entry.inputs else None,
        }
        if extra and extra.get(entry.name) is not None:
            material["extra"] = extra[entry.name]
        keys[entry.name] = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return keys


def read_manifest(folder: str) -> Dict[str, Any] | None:
    path = storage.join(folder, MANIFEST)
    if not storage.exists(path):
        return None
    try:
        written: Dict[str, Any] = storage.read_json(path)
        return written
    except (ValueError, OSError):
        return None  # a torn manifest counts as no manifest: the stage is redone
