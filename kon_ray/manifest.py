"""Which inputs decide a stage's outputs, as one key per stage.

A stage's key hashes the config sections that affect it, the keys of the stages it reads, and (for ingest) the
fingerprint of the input files. Equal keys mean equal outputs, so a published stage with a matching manifest is
reused instead of recomputed: after an interruption (re-running the same command redoes only what is missing) and
across the jobs of a sweep (changing `model.*` redoes train and infer, never ingest, preprocess or drift).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Mapping, Sequence

from kon_ray import storage

# The config paths each stage's outputs depend on (dot paths into the plain config).
STAGE_CONFIG: Dict[str, Sequence[str]] = {
    "ingest": ("dataset.path", "dataset.columns", "dataset.id_column"),
    "preprocess": ("dataset", "split", "seed"),
    "drift": ("drift",),
    "segment": ("dataset.segment", "seed"),
    "train": ("model", "seed", "cluster.train_workers", "cluster.cpus_per_train_worker"),
    "infer": ("drift",),
}

# The stages whose outputs each stage reads.
STAGE_INPUTS: Dict[str, Sequence[str]] = {
    "ingest": (),
    "preprocess": ("ingest",),
    "drift": ("preprocess",),
    "segment": ("preprocess",),
    "train": ("preprocess", "segment"),
    "infer": ("preprocess", "segment", "train", "drift"),
}

MANIFEST = "_manifest.json"


def select(plain: Mapping[str, Any], path: str) -> Any:
    node: Any = plain
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def stage_keys(plain: Mapping[str, Any], data_fingerprint: str) -> Dict[str, str]:
    """The key of every stage, in pipeline order (a stage's key covers everything upstream of it)."""
    keys: Dict[str, str] = {}
    for stage, paths in STAGE_CONFIG.items():
        material = {
            "stage": stage,
            "config": {path: select(plain, path) for path in paths},
            "inputs": {name: keys[name] for name in STAGE_INPUTS[stage]},
            "data": data_fingerprint if stage == "ingest" else None,
        }
        keys[stage] = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return keys


def data_fingerprint(path: str) -> str:
    """A cheap fingerprint of the input files: names, sizes and modification times (no data is read)."""
    fs, fs_path = storage.filesystem(path)
    digest = hashlib.sha256(path.encode())
    for file in storage.list_files(path):
        info = fs.get_file_info(file)
        digest.update(f"{file}:{info.size}:{info.mtime_ns};".encode())
    return digest.hexdigest()[:16]


def read_manifest(folder: str) -> Dict[str, Any] | None:
    path = storage.join(folder, MANIFEST)
    if not storage.exists(path):
        return None
    try:
        return storage.read_json(path)
    except (ValueError, OSError):
        return None  # a torn manifest counts as no manifest: the stage is redone
