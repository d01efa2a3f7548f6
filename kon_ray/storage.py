"""Where files live: local paths and s3:// URIs through pyarrow filesystems, and publishing in one step.

Credentials come only from the standard AWS chain (environment, profile, instance role); they are never read
from the config. An S3-compatible store is reached with the standard `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL` environment variable.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, List, Tuple
from urllib.parse import urlparse

import pyarrow.fs as pafs


def is_s3(path: str) -> bool:
    return path.startswith("s3://")


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def filesystem(path: str) -> Tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for `path` and the path as that filesystem names it."""
    if is_s3(path):
        parsed = urlparse(path)
        endpoint = s3_endpoint()
        kwargs: dict[str, Any] = {"region": os.environ.get("AWS_DEFAULT_REGION", "eu-west-1")}
        if endpoint:
            kwargs["endpoint_override"] = endpoint
            kwargs["scheme"] = urlparse(endpoint).scheme or "https"
        return pafs.S3FileSystem(**kwargs), f"{parsed.netloc}{parsed.path}".rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(path)


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def exists(path: str) -> bool:
    fs, fs_path = filesystem(path)
    return fs.get_file_info(fs_path).type != pafs.FileType.NotFound


def part_name(index: int) -> str:
    """The file of a stage's work unit `index` in a run-folder dataset: a retried unit rewrites its own part, and the
    names sort in unit order (readers list the folder: `list_files`)."""
    return f"part-{index:05d}.parquet"


def list_files(path: str, suffix: str = ".parquet") -> List[str]:
    """The files under `path` (or `path` itself if it is a file) ending in `suffix`, sorted, as fs paths."""
    fs, fs_path = filesystem(path)
    info = fs.get_file_info(fs_path)
    if info.type == pafs.FileType.File:
        return [fs_path]
    if info.type == pafs.FileType.NotFound:
        return []
    selector = pafs.FileSelector(fs_path, recursive=True)
    return sorted(
        f.path
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.path.endswith(suffix) and "/_tmp" not in f.path
    )


def write_text(path: str, text: str) -> None:
    """Write a whole file at once: a local temp file renamed into place, or one S3 PUT (atomic per object)."""
    fs, fs_path = filesystem(path)
    if is_s3(path):
        with fs.open_output_stream(fs_path) as out:
            out.write(text.encode())
        return
    os.makedirs(os.path.dirname(fs_path) or ".", exist_ok=True)
    tmp = f"{fs_path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, fs_path)


def read_text(path: str) -> str:
    fs, fs_path = filesystem(path)
    with fs.open_input_stream(fs_path) as stream:
        return stream.read().decode()


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def check_writable(path: str, key: str) -> None:
    """Fail before any work when a local output folder cannot be created or written (S3 is checked on write)."""
    from kon_ray.errors import ConfigError

    if is_s3(path):
        return
    folder = os.path.abspath(path)
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{uuid.uuid4().hex[:8]}")
        with open(probe, "w", encoding="utf-8"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise ConfigError(f"{key}={path} is not writable ({exc.strerror or exc}); choose another {key}") from None


STAGING_MARK = "._tmp-"
# On S3 every stage stages under this one prefix of its bucket, so that a single lifecycle rule (infra/modules/
# secure_bucket, `expire-abandoned-staging`) can expire what a killed run left behind. S3 has no rename: publishing
# copies the objects whatever the staged key, so staging away from the final folder costs nothing there.
S3_STAGING_PREFIX = "_kon_staging"


def staging_dir(final: str) -> str:
    """A temp location for a stage's outputs, published later by `publish`. Locally a sibling of `final` (publishing
    is one rename); on S3 under the bucket's S3_STAGING_PREFIX. Its name carries the writing process's id so that a
    later run can tell a folder abandoned by a killed run from one still being written."""
    suffix = f"{STAGING_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if is_s3(final):
        parsed = urlparse(final)
        return f"s3://{parsed.netloc}/{S3_STAGING_PREFIX}/{parsed.path.strip('/')}{suffix}"
    return f"{final.rstrip('/')}{suffix}"


def remove_abandoned_staging(final: str) -> List[str]:
    """Delete local staging folders of `final` whose writer process is gone (a run killed mid-stage); return them.

    Only local folders: on S3 the writer may be another machine, so leftovers there (all under S3_STAGING_PREFIX,
    never read: without a published manifest a stage is not reused) are expired by the bucket's lifecycle rule.
    """
    if is_s3(final):
        return []
    import psutil

    parent, name = os.path.split(os.path.abspath(final))
    removed = []
    for entry in os.listdir(parent) if os.path.isdir(parent) else []:
        if not entry.startswith(name + STAGING_MARK):
            continue
        owner = entry[len(name + STAGING_MARK):].split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and not psutil.pid_exists(int(owner)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            removed.append(os.path.join(parent, entry))
    return removed


def remove(path: str) -> None:
    fs, fs_path = filesystem(path)
    info = fs.get_file_info(fs_path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(fs_path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(fs_path)


def publish(staged: str, final: str) -> None:
    """Move a fully written staging folder to its final place in one step.

    Locally this is one rename, so readers see all of the folder or none of it. S3 has no rename; there the
    objects are copied and the stage's manifest, written after the copy, is what marks the folder complete.
    """
    fs, staged_path = filesystem(staged)
    _, final_path = filesystem(final)
    if fs.get_file_info(final_path).type != pafs.FileType.NotFound:
        remove(final)
    if is_s3(final):
        pafs.copy_files(staged_path, final_path, source_filesystem=fs, destination_filesystem=fs)
        fs.delete_dir(staged_path)
        return
    os.makedirs(os.path.dirname(final_path) or ".", exist_ok=True)
    if fs.get_file_info(staged_path).type == pafs.FileType.NotFound:
        os.makedirs(final_path, exist_ok=True)
        return
    shutil.move(staged_path, final_path)
