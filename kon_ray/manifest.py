"""Which inputs decide a stage's outputs, as one key per stage.

A stage's key hashes the config sections that affect it, the keys of the stages it reads, and (for ingest) the
data's fingerprint (`kon_ray.storage.data_fingerprint`: names, sizes and modification times of the input files, the
value ingest.json and MLflow record). Equal keys mean equal outputs, so a published stage with a matching manifest
is reused instead of recomputed: after an interruption (re-running the same command redoes only what is missing)
and across the jobs of a sweep (changing `model.*` redoes train and infer, never ingest, preprocess or drift).

A manifest also lists every file the stage published (`files`: relative path -> size in bytes) and carries a
`publish_id`. Before a folder is reused, one listing of it is compared with that list (`problem`): a file missing,
truncated, grown or unlisted (a machine that died mid-copy on S3, where publishing is not one rename; a disk that
lost data) makes the stage count as not published, so it is recomputed, never read. No data is read to check. A
manifest written before the list existed (no `files`) is not trusted: that stage is recomputed once.
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
    (`kon_ray.storage.data_fingerprint`) for the stage that reads the data, and `extra[stage]` (what else decides
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


def problem(folder: str, written: Mapping[str, Any]) -> str | None:
    """Why the published `folder` does not match its manifest `written` (files from one listing, sizes only), or
    None when every listed file is there with its size and nothing else is."""
    listed = written.get("files")
    if not isinstance(listed, dict):
        return "its manifest predates the file list (written by an older kon_ray)"
    found = {name: size for name, size in storage.file_sizes(folder).items() if name != MANIFEST}
    missing = sorted(set(listed) - set(found))
    if missing:
        return f"{len(missing)} file(s) missing, e.g. {missing[0]}"
    wrong = sorted(name for name in listed if found[name] != listed[name])
    if wrong:
        return f"{wrong[0]} is {found[wrong[0]]} bytes, the manifest says {listed[wrong[0]]}"
    extra = sorted(set(found) - set(listed))
    if extra:
        return f"{len(extra)} file(s) not in the manifest, e.g. {extra[0]}"
    return None


def published(folder: str, key: str) -> Dict[str, Any] | None:
    """The manifest of `folder` if it is a complete publication of `key`: the manifest is readable, names that key,
    and a listing of the folder matches its file list; else None (the stage has to be computed)."""
    written = read_manifest(folder)
    if written is None or written.get("key") != key:
        return None
    return written if problem(folder, written) is None else None


def read_manifest(folder: str) -> Dict[str, Any] | None:
    path = storage.join(folder, MANIFEST)
    if not storage.exists(path):
        return None
    try:
        written: Dict[str, Any] = storage.read_json(path)
        return written
    except (ValueError, OSError):
        return None  # a torn manifest counts as no manifest: the stage is redone
