"""Where files live: local paths and s3:// URIs through pyarrow filesystems, and publishing in one step.

Credentials come only from the standard AWS chain (environment, profile, instance role); they are never read
from the config. An S3-compatible store is reached with the standard `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL` environment variable.

S3's retry budget: every request (pyarrow's, and boto3's conditional puts) is tried up to S3_MAX_ATTEMPTS times with
the AWS SDK's standard retry strategy (exponential backoff with jitter, longer for throttling) on throttling (503
SlowDown), 5xx answers, timeouts and dropped connections; `KON_S3_MAX_ATTEMPTS` in the environment changes it. Past
the budget the stage fails with one line naming the object and exit 5 (`storage_error`, kon_ray.errors.StorageError).

Parquet discovery lives here too, below every stage that reads data: `find_files` (the Parquet files at a path, or
a DataError naming it), `read_metadata` (one file's footer) and `data_fingerprint` (the data's part of the cache
keys), read from listings and footers alone.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import uuid
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kon_ray.errors import ConfigError, DataError, StorageError

# The retry budget of one S3 request: attempts in all (the first one included), with the AWS SDK's standard backoff
# (its delays grow to ~20 s; 10 attempts ride out about a minute of throttling). A documented constant, not a config
# key: it is a property of the store, the same for every run; KON_S3_MAX_ATTEMPTS overrides it (the tests use 3).
S3_MAX_ATTEMPTS = 10
# Seconds to open a connection, and to wait for the next bytes of an answer, before the attempt counts as failed.
S3_CONNECT_TIMEOUT_S = 10.0
S3_REQUEST_TIMEOUT_S = 60.0


def s3_max_attempts() -> int:
    try:
        return max(1, int(os.environ.get("KON_S3_MAX_ATTEMPTS", S3_MAX_ATTEMPTS)))
    except ValueError:
        return S3_MAX_ATTEMPTS


def is_s3(path: str) -> bool:
    return path.startswith("s3://")


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def filesystem(path: str) -> Tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for `path` and the path as that filesystem names it."""
    if is_s3(path):
        parsed = urlparse(path)
        endpoint = s3_endpoint()
        # NB: pyarrow does not pickle the retry strategy: a filesystem handed to a Ray task as an argument (Ray
        # Data's read_parquet) retries with pyarrow's default of 3 attempts there; kon_ray's own tasks build theirs
        kwargs: dict[str, Any] = {
            "region": os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"),
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=s3_max_attempts()),
            "connect_timeout": S3_CONNECT_TIMEOUT_S,
            "request_timeout": S3_REQUEST_TIMEOUT_S,
        }
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


# -- Parquet discovery: listings and footers, no data read ---------------------------------------------------
def data_fingerprint(path: str) -> str:
    """The data's fingerprint: a hash of `path` and each input file's name, size and modification time, from the
    file listing alone. No data is read, so every run computes it before deciding what to reuse; rewriting any file
    (even with the same size and rows) changes it, and so redoes every stage. It is the data's part of the ingest
    stage's cache key and the `fingerprint` of ingest.json (rows and the schema hash are fields of their own)."""
    fs, _ = filesystem(path)
    digest = hashlib.sha256(path.encode())
    for file in list_files(path):
        info = fs.get_file_info(file)
        digest.update(f"{file}:{info.size}:{info.mtime_ns};".encode())
    return digest.hexdigest()[:16]


def read_metadata(path: str) -> tuple[pa.Schema, int, int]:
    """(schema, rows, size in bytes) of one Parquet file, or a DataError naming it."""
    fs, fs_path = filesystem(path)
    try:
        size = fs.get_file_info(fs_path).size or 0
        with fs.open_input_file(fs_path) as handle:
            metadata = pq.ParquetFile(handle).metadata
            return metadata.schema.to_arrow_schema(), metadata.num_rows, size
    except (pa.ArrowInvalid, OSError) as exc:
        fault = storage_error(exc, path)  # S3 past its retry budget is the store's fault, not the file's
        if fault is not None:
            raise fault from None
        reason = str(exc).splitlines()[0]
        raise DataError(f"{path}: not a readable Parquet file ({reason})") from None


def find_files(path: str, key: str | None = None, fix: str | None = None) -> List[str]:
    """The Parquet files at `path` (a file or a folder of parts), or a DataError naming the path, the config `key`
    it came from and, when there is one, the command that `fix`es it."""
    files = list_files(path)
    if not files:
        where = f" ({key})" if key else ""
        then = f"; {fix}" if fix else ""
        if not exists(path):
            raise DataError(f"{path}: no such file or folder{where}{then}")
        raise DataError(f"{path}: no .parquet files found{where}{then}")
    prefix = "s3://" if is_s3(path) else ""
    return [prefix + f for f in files]


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


def put_if_absent(path: str, text: str) -> bool:
    """Create the file `path` holding `text` unless it exists; whether this call created it. Locally O_EXCL; on S3
    a conditional PUT (`If-None-Match: *`, which S3 and moto honour; pyarrow has no conditional write, so boto3).
    Two callers racing for one path: exactly one gets True."""
    fs, fs_path = filesystem(path)
    if not is_s3(path):
        os.makedirs(os.path.dirname(fs_path) or ".", exist_ok=True)
        try:
            handle = os.open(fs_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        return True
    import botocore.exceptions

    bucket, _, key = fs_path.partition("/")
    client = _s3_client(os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"), s3_endpoint(), s3_max_attempts())
    try:
        client.put_object(Bucket=bucket, Key=key, Body=text.encode(), IfNoneMatch="*")
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            return False  # written by someone else first (409: a conditional write of it is in flight)
        raise OSError(f"When writing key '{key}' in bucket '{bucket}': AWS Error {code}: {exc}") from exc
    except botocore.exceptions.BotoCoreError as exc:  # connection errors past the retry budget
        raise OSError(f"When writing key '{key}' in bucket '{bucket}': {exc}") from exc
    return True


@functools.lru_cache(maxsize=8)
def _s3_client(region: str, endpoint: Optional[str], attempts: int) -> Any:
    """A boto3 S3 client with the same retry budget and timeouts as pyarrow's (one per setting: they are slow to
    build); credentials from the standard chain."""
    import botocore.config
    from boto3.session import Session

    return Session(region_name=region).client("s3", endpoint_url=endpoint, config=botocore.config.Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_REQUEST_TIMEOUT_S))


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
# A published folder being replaced (`set_aside`), deleted right after; one left by a killed run is removed like
# abandoned staging.
ASIDE_MARK = "._old-"
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
    """Delete local staging (and set-aside) folders of `final` whose writer process is gone (a run killed
    mid-stage); return them.

    Only local folders: on S3 the writer may be another machine, so leftovers there (all under S3_STAGING_PREFIX,
    never read: without a published manifest a stage is not reused) are expired by the bucket's lifecycle rule.
    """
    if is_s3(final):
        return []
    import psutil

    parent, name = os.path.split(os.path.abspath(final))
    removed = []
    for entry in os.listdir(parent) if os.path.isdir(parent) else []:
        mark = next((m for m in (STAGING_MARK, ASIDE_MARK) if entry.startswith(name + m)), None)
        if mark is None:
            continue
        owner = entry[len(name + mark):].split("-", 1)[0]
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


def file_sizes(path: str) -> Dict[str, int]:
    """Every file under the folder `path` as relative path -> size in bytes, from one listing: no data is read."""
    fs, fs_path = filesystem(path)
    if fs.get_file_info(fs_path).type != pafs.FileType.Directory:
        return {}
    prefix = fs_path.rstrip("/") + "/"
    return {
        info.path[len(prefix):]: int(info.size or 0)
        for info in fs.get_file_info(pafs.FileSelector(fs_path, recursive=True))
        if info.type == pafs.FileType.File
    }


def rename_into_place(staged: str, final: str) -> bool:
    """Locally: rename the folder `staged` to `final` in one step unless `final` already exists; whether it did.
    (`os.rename` of a folder onto an existing non-empty folder fails, so two publishers never mix their files.)"""
    os.makedirs(os.path.dirname(os.path.abspath(final)) or ".", exist_ok=True)
    try:
        os.rename(staged, final)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def set_aside(final: str) -> str:
    """Locally: rename `final` out of the way (to be deleted) so that a new folder can take its name; the new name."""
    aside = f"{final.rstrip('/')}{ASIDE_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(final, aside)
    return aside


def age_seconds(path: str) -> Optional[float]:
    """Seconds since `path` was last written, or None if it does not exist."""
    import time

    fs, fs_path = filesystem(path)
    info = fs.get_file_info(fs_path)
    if info.type == pafs.FileType.NotFound or info.mtime is None:
        return None
    return time.time() - info.mtime.timestamp()


def copy_folder(staged: str, final: str) -> None:
    """Copy every file of the folder `staged` under `final` (S3: server-side copies, one object at a time)."""
    fs, staged_path = filesystem(staged)
    _, final_path = filesystem(final)
    pafs.copy_files(staged_path, final_path, source_filesystem=fs, destination_filesystem=fs)


def remove_quietly(path: str) -> None:
    """`remove`, for cleaning up after a failure: a store that is failing may refuse this too (S3 staging left
    behind is expired by the bucket's lifecycle rule; it is never read)."""
    try:
        if is_s3(path):
            remove(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


_S3_OBJECT = re.compile(r"key '([^']*)' in bucket '([^']*)'")
_S3_BUCKET = re.compile(r"bucket '([^']*)'")
_AWS_ERROR = re.compile(r"AWS Error (\S+)(?: \(HTTP status (\d+)\))?(?: during (\S+) operation)?")
_NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file too large for the filesystem",
             errno.EDQUOT: "disk quota exceeded"}
_NO_SPACE_TEXT = ("No space left on device", "File too large", "Disk quota exceeded")


def storage_error(exc: BaseException, where: str) -> Optional[Any]:
    """The StorageError (one line, exit 5) that `exc` is, or wraps (a Ray task's error, a cause), if it is a fault
    of the store rather than of kon_ray or the data: an S3 request that failed past its retry budget (naming the
    object, s3://bucket/key) or a full disk (naming the file). `where`: the folder being written, named when the
    error itself names nothing. None for anything else."""

    for error in _causes(exc):
        if not isinstance(error, OSError):
            continue
        text = str(error)
        if "AWS Error" in text or "curlCode" in text or "When writing key" in text:
            found = _S3_OBJECT.search(text)
            bucket = _S3_BUCKET.search(text)
            target = (f"s3://{found.group(2)}/{found.group(1)}" if found
                      else f"s3://{bucket.group(1)}" if bucket else where)
            aws = _AWS_ERROR.search(text)
            what = (" ".join(part for part in (aws.group(3), aws.group(1),
                                               f"HTTP {aws.group(2)}" if aws.group(2) else None) if part)
                    if aws else text.split(":")[-1].strip()[:120])
            return StorageError(
                f"S3 request for {target} still failing after {s3_max_attempts()} attempts ({what}): the store "
                "throttled or dropped the connection past the retry budget (KON_S3_MAX_ATTEMPTS); nothing of the "
                "stage was published, run the same command again to resume")
        reason = _NO_SPACE.get(error.errno or 0) or next(
            (t.lower() for t in _NO_SPACE_TEXT if t in text), None)
        if reason:
            target = error.filename or where
            return StorageError(f"{reason} writing {target}: nothing of the stage was published; free space there "
                                "(or set cache_dir=/output_dir= to another disk) and run the same command again")
    return None


def _causes(exc: BaseException) -> List[BaseException]:
    seen: List[BaseException] = []
    todo: List[BaseException] = [exc]
    while todo and len(seen) < 50:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for attr in ("cause", "__cause__", "__context__"):
            nested = getattr(current, attr, None)
            if isinstance(nested, BaseException):
                todo.append(nested)
    return seen


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
