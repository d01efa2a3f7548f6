"""A run folder a person can read where it lives, local or on S3.

Every stage publishes into the cache (kon_ray/pipeline.py); the run folder points at it: a symlink per stage
locally, a `<folder>.json` pointer on S3, where `aws s3 ls s3://BUCKET/runs/my-run/drift/` would otherwise find
nothing. So after each stage the run folder gets:

- `index.json`: the dataset, the config (secrets masked) and, per stage, its folder name, key, where it was
  published, whether it was reused, and every output file with its full location and size. kon_ray/tracking/log.py
  reads it to log the run to MLflow after the fact.
- on S3, at the end, `run.log` and `.hydra/` (`copy_run_files`), which the command keeps in a local folder;
- on S3, beside each pointer, a copy of the stage's readable files (reports, summaries, states, manifests: what
  MLflow gets as artifacts, not the Parquet parts or models) under `<folder>/`, so the drift report of a run on S3
  is at `s3://BUCKET/runs/my-run/drift/drift_report.html`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any, Dict, List, Mapping, Tuple

from kon_ray import storage
from kon_ray.secrets import redact

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
READABLE_MAX_BYTES = 50 * 1024**2  # a stage file larger than this is data, not a report
_DATA_SUFFIXES = (".parquet", ".ubj", ".tmp")  # data parts and models: listed in the index, never copied


def walk(folder: str) -> List[Tuple[str, str, int]]:
    """(full location, path relative to `folder`, bytes) of every file under `folder`, sorted; hidden files and
    staging leftovers left out. Relative paths are cut from the listing as strings: an S3 key is no path of this
    machine (os.path.relpath would ask for the current folder)."""
    base = folder if storage.is_s3(folder) else os.path.abspath(folder)
    found = []
    for relative, size in storage.file_sizes(folder).items():  # one listing, the manifests' own
        location = storage.join(base, relative)
        if "/_tmp" in location or any(part.startswith(".") for part in relative.split("/")):
            continue
        found.append((location, relative, size))
    return sorted(found, key=lambda item: item[1])


def readable(files: List[Tuple[str, str, int]]) -> List[Tuple[str, str, int]]:
    """The files a person (or MLflow) reads: reports, summaries, states, manifests."""
    return [f for f in files if not f[1].endswith(_DATA_SUFFIXES) and f[2] <= READABLE_MAX_BYTES]


class RunIndex:
    """The run folder's index.json, rewritten after each stage (one small write: the run folder tells what it
    holds at every point, also after a failure)."""

    def __init__(self, run_dir: str, dataset: str, plain: Mapping[str, Any]):
        self.run_dir = run_dir
        self.document: Dict[str, Any] = {
            "run_folder": run_dir,
            "dataset": dataset,
            "config": redact(dict(plain)),
            "stages": {},
        }

    def add(self, stage: str, folder: str, key: str, final: str, reused: bool) -> None:
        files = walk(final)
        self.document["stages"][stage] = {
            "folder": folder,
            "key": key,
            "location": final,
            "reused": reused,
            "files": [{"location": location, "bytes": size} for location, _, size in files],
        }
        self.document["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if storage.is_s3(self.run_dir):
            self._copy_readable(folder, files)
        storage.write_json(storage.join(self.run_dir, INDEX_FILE), self.document)

    def _copy_readable(self, folder: str, files: List[Tuple[str, str, int]]) -> None:
        """Server-side copies (S3 CopyObject) of the stage's readable files under the run folder's `<folder>/`."""
        fs, _ = storage.filesystem(self.run_dir)
        for location, relative, _ in readable(files):
            target = storage.join(self.run_dir, folder, relative)
            fs.copy_file(storage.filesystem(location)[1], storage.filesystem(target)[1])


def read_index(run_dir: str) -> Dict[str, Any]:
    """A run folder's index.json (a ValueError naming the file when it is missing or unreadable)."""
    path = storage.join(run_dir, INDEX_FILE)
    if not storage.exists(path):
        raise ValueError(f"{path} is missing: {run_dir} is not a kon_ray run folder (or predates index.json)")
    document = storage.read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("stages"), dict):
        raise ValueError(f"{path} is not a run index (no 'stages')")
    return document


def copy_run_files(run_dir: str, log_file: str | None, hydra_dir: str | None) -> None:
    """On S3, the run's own files beside its outputs: `run.log` and Hydra's `.hydra/` (the composed config and the
    overrides), which the command keeps in a local folder while it runs. Locally they are in the run folder."""
    if not storage.is_s3(run_dir):
        return
    local = [(log_file, "run.log")] if log_file and os.path.isfile(log_file) else []
    if hydra_dir and os.path.isdir(hydra_dir):
        local += [(os.path.join(hydra_dir, name), f".hydra/{name}") for name in sorted(os.listdir(hydra_dir))]
    for path, relative in local:
        with open(path, encoding="utf-8", errors="replace") as handle:
            storage.write_text(storage.join(run_dir, relative), handle.read())
