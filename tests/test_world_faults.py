"""Faults of the world outside, tried for real on the storage side (issue 26, item 3).

- S3 throttling (503 SlowDown with S3's XML body) and dropped connections (TCP reset), injected by a proxy in front of
  the session's moto server (tests/s3_fault_proxy.py): the runs retry within the budget (kon_ray/storage.py
  S3_MAX_ATTEMPTS) and publish exactly a clean run's bytes; past the budget, one line naming the object, exit 5,
  nothing half-published.
- A full disk under the cache (a real 1 MiB tmpfs mount where this machine allows mounting, else RLIMIT_FSIZE: EFBIG
  from the kernel): one line, exit 5, the staging folder gone, the earlier stage intact.
- Two runs of the same dataset and config started together, on a local cache and on S3: both finish, each stage is
  published once, both run folders complete.
- A cache entry truncated, missing a part, or with an old manifest: found from a listing, recomputed, never read.

Each run is `tests/world_fault_run.py` (the command's body and its `guarded` edge, without Ray or MLflow) on a tiny
generated POLA sample through ingest and preprocess: ~5-10 s each. Every wait is bounded; the concurrent runs start on
an event (a file appearing), not after a sleep.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from kon_ray import manifest, storage
from tests.conftest import REPO, generate_pola, moto_environment
from tests.s3_fault_proxy import FaultProxy

ROWS = 3000
STAGES = "stages=[ingest,preprocess]"
RUN_TIMEOUT = 300
BUCKET = "kon-faults"

Tree = Dict[str, Dict[str, bytes]]  # stage -> relative path -> bytes (manifests left out)


# ---------------------------------------------------------------------------------------------------------- helpers


def _env(endpoint: Optional[str] = None, **extra: str) -> Dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO), **extra}
    env.pop("RAY_ADDRESS", None)
    if endpoint:
        env.update(moto_environment(endpoint))
    return env


def _command(output_dir: str, *overrides: str) -> List[str]:
    return [sys.executable, "-m", "tests.world_fault_run", output_dir, STAGES, *overrides]


def _run(log: Path, output_dir: str, *overrides: str, env: Dict[str, str], preexec=None) -> Tuple[int, str]:
    with log.open("w") as out:
        code = subprocess.run(_command(output_dir, *overrides), stdout=out, stderr=subprocess.STDOUT, env=env,
                              cwd=REPO, timeout=RUN_TIMEOUT, preexec_fn=preexec).returncode
    return code, log.read_text()


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def _local_tree(cache: Path) -> Tree:
    tree: Tree = {}
    for folder in sorted(p for p in cache.iterdir() if p.is_dir()):
        stage = folder.name.split("-", 1)[0]
        assert stage not in tree, f"two folders of stage {stage} in {cache}"
        tree[stage] = {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
                       if f.is_file() and f.name != manifest.MANIFEST}
    return tree


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _s3_keys(client, prefix: str) -> Dict[str, int]:
    """The objects under `prefix`, key -> size, without the empty `folder/` markers pyarrow writes for folders."""
    keys: Dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.update({o["Key"]: o["Size"] for o in page.get("Contents", [])
                     if not (o["Key"].endswith("/") and o["Size"] == 0)})
    return keys


def _s3_tree(client, cache_prefix: str) -> Tree:
    tree: Tree = {}
    for key in sorted(_s3_keys(client, cache_prefix + "/")):
        folder, _, rel = key[len(cache_prefix) + 1:].partition("/")
        if not rel or rel == manifest.MANIFEST:
            continue
        stage = folder.split("-", 1)[0]
        tree.setdefault(stage, {})[rel] = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return tree


def _assert_complete_local(cache: Path, stages: List[str]) -> Dict[str, Dict]:
    """Every entry of the cache is a published stage folder whose listing matches its manifest; no staging or
    set-aside folder is left; the manifests by stage."""
    names = sorted(p.name for p in cache.iterdir())
    assert not [n for n in names if storage.STAGING_MARK in n or "._old-" in n], names
    found = {}
    for name in names:
        written = manifest.read_manifest(str(cache / name))
        assert written is not None, f"{name}: a folder without its manifest"
        assert manifest.problem(str(cache / name), written) is None, name
        found[written["stage"]] = written
    assert sorted(found) == sorted(stages), names
    return found


# ---------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pola(tmp_path_factory) -> Path:
    return generate_pola(tmp_path_factory.mktemp("world") / "POLA", ROWS, parts=2)


@pytest.fixture(scope="module")
def local_reference(pola, tmp_path_factory) -> Tree:
    """A clean local run: what every faulted local run must publish, byte for byte."""
    base = tmp_path_factory.mktemp("clean")
    code, text = _run(base / "run.log", str(base / "runs" / "run"), f"dataset.path={pola}", env=_env())
    assert code == 0, text[-3000:]
    return _local_tree(base / "runs" / ".cache")


@pytest.fixture(scope="module")
def s3_world(moto_server, pola) -> Dict[str, str]:
    """A bucket on the session's moto holding the POLA sample (copied from `pola`, unchanged); its data path."""
    client = _s3(moto_server)
    try:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for part in sorted(pola.glob("*.parquet")):
        client.put_object(Bucket=BUCKET, Key=f"data/POLA/{part.name}", Body=part.read_bytes())
    return {"data": f"s3://{BUCKET}/data/POLA", "endpoint": moto_server}


@pytest.fixture(scope="module")
def s3_reference(s3_world, tmp_path_factory) -> Tree:
    """A clean run on S3 (no proxy): what every faulted S3 run must publish, byte for byte."""
    base = tmp_path_factory.mktemp("s3clean")
    code, text = _run(base / "run.log", f"s3://{BUCKET}/clean/run", f"dataset.path={s3_world['data']}",
                      f"cache_dir=s3://{BUCKET}/clean/cache", env=_env(s3_world["endpoint"]))
    assert code == 0, text[-3000:]
    tree = _s3_tree(_s3(s3_world["endpoint"]), "clean/cache")
    assert sorted(tree) == ["ingest", "preprocess"] and any(k.endswith(".parquet") for k in tree["preprocess"])
    return tree


@pytest.fixture
def s3_env(s3_world, monkeypatch):
    """This process reaches moto directly (kon_ray.manifest's checks of what the runs published)."""
    for name, value in moto_environment(s3_world["endpoint"]).items():
        monkeypatch.setenv(name, value)
    return s3_world


# ------------------------------------------------------------------------------------------- S3 throttling, resets


@pytest.mark.slow
def test_s3_throttling_and_dropped_connections_are_retried_and_publish_a_clean_runs_bytes(
        s3_env, s3_reference, tmp_path):
    """Every 6th request answered 503 SlowDown or its connection reset, alternately, 16 faults in all (8 of each):
    every stage's reads, writes, copies and deletes are retried within the budget; the published folders equal a
    clean run's byte for byte, and both run-folder pointers lead to complete folders."""
    case = f"throttled-{uuid.uuid4().hex[:6]}"
    with FaultProxy(s3_env["endpoint"], every=6, fault="mixed", limit=16) as proxy:
        code, text = _run(tmp_path / "run.log", f"s3://{BUCKET}/{case}/run", f"dataset.path={s3_env['data']}",
                          f"cache_dir=s3://{BUCKET}/{case}/cache", env=_env(proxy.url))
    assert code == 0, text[-3000:]
    assert proxy.faults == 16 and proxy.requests > 6 * 16, (proxy.requests, proxy.faults)
    client = _s3(s3_env["endpoint"])
    assert _s3_tree(client, f"{case}/cache") == s3_reference
    for stage in ("ingest", "features"):
        pointer = json.loads(client.get_object(Bucket=BUCKET, Key=f"{case}/run/{stage}.json")["Body"].read())
        written = manifest.read_manifest(pointer["location"])
        assert written is not None and manifest.problem(pointer["location"], written) is None
    assert not _s3_keys(client, f"_kon_staging/{case}/"), "staging left behind"


@pytest.mark.slow
def test_s3_past_the_retry_budget_is_one_line_exit_5_and_nothing_half_published(s3_env, s3_reference, tmp_path):
    """Every copy into the published train/ split fails (503 SlowDown) while the rest of preprocess's folder is
    copied: past the budget (KON_S3_MAX_ATTEMPTS=3) the run ends with one line naming that object and exit 5; the
    partial copy and the staging folder are removed; ingest, published before, is intact."""
    case = f"budget-{uuid.uuid4().hex[:6]}"
    broken = rf"^/{BUCKET}/{case}/cache/preprocess-[0-9a-f]+/train/"
    with FaultProxy(s3_env["endpoint"], fault="slowdown", always=broken) as proxy:
        code, text = _run(tmp_path / "run.log", f"s3://{BUCKET}/{case}/run", f"dataset.path={s3_env['data']}",
                          f"cache_dir=s3://{BUCKET}/{case}/cache", env=_env(proxy.url, KON_S3_MAX_ATTEMPTS="3"))
    assert code == 5, text[-3000:]
    line = _last_line(text)
    assert line.startswith("ERROR kon_ray.cli: storage error: S3 request for s3://"), line
    assert f"/{case}/cache/preprocess-" in line and "/train/" in line and "after 3 attempts" in line
    assert "Traceback" not in text
    named = line.split("S3 request for s3://", 1)[1].split(" ", 1)[0]
    tries = [p for p in proxy.faulted_paths if p.split(" ", 1)[1].split("?", 1)[0] == f"/{named}"]
    assert len(tries) == 3, proxy.faulted_paths  # the budget, spent on the object the line names
    client = _s3(s3_env["endpoint"])
    keys = _s3_keys(client, f"{case}/")
    assert not [k for k in keys if "/preprocess-" in k], "half a preprocess folder published"
    assert not [k for k in keys if k.endswith(".json") and "/features" in k]
    assert not _s3_keys(client, f"_kon_staging/{case}/"), "staging left behind"
    assert _s3_tree(client, f"{case}/cache") == {"ingest": s3_reference["ingest"]}
    ingest = next(k for k in keys if k.endswith("/" + manifest.MANIFEST))
    folder = f"s3://{BUCKET}/{ingest.rsplit('/', 1)[0]}"
    assert manifest.problem(folder, manifest.read_manifest(folder) or {}) is None


# --------------------------------------------------------------------------------------------------------- full disk


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _limit_file_size() -> None:  # in the child: a write past 512 KiB fails with EFBIG (Python ignores SIGXFSZ)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))


def test_a_full_disk_under_the_cache_is_one_line_exit_5_staging_removed_earlier_stage_intact(
        pola, local_reference, tmp_path):
    """The cache on a 1 MiB tmpfs: ingest's few bytes fit, preprocess's 2.3 MB of splits do not (ENOSPC from the
    kernel). Where mounting is not allowed, RLIMIT_FSIZE gives the same kind of real kernel error (EFBIG)."""
    cache = tmp_path / "cache"
    mounted = _mount_tmpfs(cache, "1m")
    try:
        code, text = _run(tmp_path / "run.log", str(tmp_path / "runs" / "run"), f"dataset.path={pola}",
                          f"cache_dir={cache}", env=_env(), preexec=None if mounted else _limit_file_size)
        assert code == 5, text[-3000:]
        line = _last_line(text)
        reason = "no space left on device" if mounted else "file too large for the filesystem"
        assert line.startswith(f"ERROR kon_ray.cli: storage error: {reason} writing "), line
        assert "Traceback" not in text
        assert sorted(p.name.split("-")[0] for p in cache.iterdir()) == ["ingest"], "staging or preprocess left"
        _assert_complete_local(cache, ["ingest"])
        assert _local_tree(cache) == {"ingest": local_reference["ingest"]}
    finally:
        if mounted:
            subprocess.run(["umount", str(cache)], timeout=60, check=False)


# ------------------------------------------------------------------------------------------ two runs at the same time


def _race(tmp_path: Path, outputs: List[str], overrides: List[str], env: Dict[str, str]) -> List[str]:
    """Start two runs that wait for one event (a file appearing), fire it, and return both logs (each exit 0)."""
    go = tmp_path / "go"
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    procs = []
    for log, output in zip(logs, outputs):
        with log.open("w") as out:
            procs.append(subprocess.Popen(_command(output, *overrides), stdout=out, stderr=subprocess.STDOUT,
                                          env={**env, "KON_TEST_GO": str(go)}, cwd=REPO))
    try:
        go.touch()
        codes = [p.wait(timeout=RUN_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], [t[-2000:] for t in texts]
    return texts


def _published_once(texts: List[str], stages: List[str]) -> None:
    """Per stage, exactly one run published its own folder; the other reused it or discarded its copy."""
    for stage in stages:
        published = [t for t in texts if f"stage {stage}: finished in" in t]
        assert len(published) == 1, stage
        other = next(t for t in texts if t is not published[0])
        assert (f"stage {stage}: reused" in other
                or f"stage {stage}: another run published" in other), (stage, other[-2000:])


@pytest.mark.slow
def test_two_runs_at_once_on_a_local_cache_publish_each_stage_once_and_both_finish(pola, local_reference, tmp_path):
    cache = tmp_path / "cache"
    runs = [str(tmp_path / "runs" / name) for name in ("a", "b")]
    texts = _race(tmp_path, runs, [f"dataset.path={pola}", f"cache_dir={cache}"], _env())
    _published_once(texts, ["ingest", "preprocess"])
    found = _assert_complete_local(cache, ["ingest", "preprocess"])
    assert _local_tree(cache) == local_reference
    for run in runs:
        for stage, folder in (("ingest", "ingest"), ("preprocess", "features")):
            target = Path(run) / folder
            assert target.is_symlink() and target.resolve().name == f"{stage}-{found[stage]['key']}"


@pytest.mark.slow
def test_two_runs_at_once_on_s3_publish_each_stage_once_and_both_finish(s3_env, s3_reference, tmp_path):
    case = f"race-{uuid.uuid4().hex[:6]}"
    runs = [f"s3://{BUCKET}/{case}/runs/{name}" for name in ("a", "b")]
    texts = _race(tmp_path, runs, [f"dataset.path={s3_env['data']}", f"cache_dir=s3://{BUCKET}/{case}/cache"],
                  _env(s3_env["endpoint"]))
    _published_once(texts, ["ingest", "preprocess"])
    client = _s3(s3_env["endpoint"])
    assert _s3_tree(client, f"{case}/cache") == s3_reference
    keys = _s3_keys(client, f"{case}/")
    assert not [k for k in keys if k.endswith("._publishing")], "a publishing claim left behind"
    assert not _s3_keys(client, f"_kon_staging/{case}/"), "staging left behind"
    for run in ("a", "b"):
        for stage in ("ingest", "features"):
            pointer = json.loads(client.get_object(Bucket=BUCKET, Key=f"{case}/runs/{run}/{stage}.json")["Body"].read())
            written = manifest.read_manifest(pointer["location"])
            assert written is not None and manifest.problem(pointer["location"], written) is None


# ----------------------------------------------------------------------------------------- a damaged cache entry


@pytest.mark.slow
def test_a_truncated_or_old_cache_entry_is_recomputed_never_read(pola, local_reference, tmp_path):
    """A copy of a clean cache with preprocess's train part cut in half (its manifest untouched) and ingest's
    manifest written by an older kon_ray (no file list): both stages are recomputed (a new publish_id) and publish
    exactly a clean run's bytes. A truncated Parquet file read as data would fail the run; here nothing reads it."""
    cache = tmp_path / "cache"
    code, text = _run(tmp_path / "first.log", str(tmp_path / "runs" / "first"), f"dataset.path={pola}",
                      f"cache_dir={cache}", env=_env())
    assert code == 0, text[-3000:]
    before = _assert_complete_local(cache, ["ingest", "preprocess"])
    folders = {stage: cache / f"{stage}-{m['key']}" for stage, m in before.items()}
    part = folders["preprocess"] / "train" / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    old = dict(before["ingest"])
    old.pop("files")
    (folders["ingest"] / manifest.MANIFEST).write_text(json.dumps(old))

    code, text = _run(tmp_path / "again.log", str(tmp_path / "runs" / "again"), f"dataset.path={pola}",
                      f"cache_dir={cache}", env=_env())
    assert code == 0, text[-3000:]
    assert "stage ingest: " in text and "predates the file list" in text
    assert "train/part-00000.parquet is " in text and "not a complete publication" in text
    after = _assert_complete_local(cache, ["ingest", "preprocess"])
    assert all(after[s]["publish_id"] != before[s]["publish_id"] for s in after)
    assert _local_tree(cache) == local_reference


@pytest.mark.slow
def test_an_s3_cache_entry_missing_a_part_is_recomputed_never_read(s3_env, s3_reference, tmp_path):
    """A machine that died mid-publish on S3 (no atomic rename): the clean run's cache copied, with one part of
    preprocess gone but its manifest there. The next run finds it from a listing, recomputes preprocess only, and
    publishes a clean run's bytes."""
    client = _s3(s3_env["endpoint"])
    case = f"torn-{uuid.uuid4().hex[:6]}"
    for key in _s3_keys(client, "clean/cache/"):
        client.copy_object(Bucket=BUCKET, Key=f"{case}/cache/{key[len('clean/cache/'):]}",
                           CopySource={"Bucket": BUCKET, "Key": key})
    lost = next(k for k in _s3_keys(client, f"{case}/cache/") if k.endswith("/current/part-00000.parquet"))
    client.delete_object(Bucket=BUCKET, Key=lost)
    code, text = _run(tmp_path / "run.log", f"s3://{BUCKET}/{case}/run", f"dataset.path={s3_env['data']}",
                      f"cache_dir=s3://{BUCKET}/{case}/cache", env=_env(s3_env["endpoint"]))
    assert code == 0, text[-3000:]
    assert "stage ingest: reused" in text
    assert "1 file(s) missing, e.g. current/part-00000.parquet" in text and "stage preprocess: finished in" in text
    assert _s3_tree(client, f"{case}/cache") == s3_reference


# ------------------------------------------------------------------ the same rules, called directly (no run, < 1 s)


def _staged(folder: Path, text: str) -> str:
    (folder / "split").mkdir(parents=True)
    (folder / "split" / "part-00000.parquet").write_text(text)
    (folder / "state.json").write_text("{}")
    return str(folder)


def test_a_manifest_is_checked_against_a_listing_of_its_folder(tmp_path):
    folder = Path(_staged(tmp_path / "stage-k", "12345"))
    written = {"key": "k", "files": storage.file_sizes(str(folder))}
    assert written["files"] == {"split/part-00000.parquet": 5, "state.json": 2}
    assert manifest.problem(str(folder), written) is None
    (folder / "split" / "part-00000.parquet").write_text("123")
    assert manifest.problem(str(folder), written) == "split/part-00000.parquet is 3 bytes, the manifest says 5"
    (folder / "split" / "part-00000.parquet").unlink()
    assert manifest.problem(str(folder), written) == "1 file(s) missing, e.g. split/part-00000.parquet"
    (folder / "split" / "part-00000.parquet").write_text("12345")
    (folder / "split" / "part-00001.parquet").write_text("x")
    assert manifest.problem(str(folder), written) == "1 file(s) not in the manifest, e.g. split/part-00001.parquet"
    assert manifest.problem(str(folder), {"key": "k"}) == (
        "its manifest predates the file list (written by an older kon_ray)")


def test_local_publishing_is_once_per_key_and_replaces_only_what_it_found(tmp_path):
    """The second publisher of a key finds the first's complete folder, discards its staging copy and returns the
    first's manifest; `reuse=false` (replaces= the manifest found before computing) and an incomplete folder are
    replaced, in one rename each."""
    from kon_ray.pipeline import _publish

    final = str(tmp_path / "cache" / "stage-k")

    def attempt(name: str, text: str, replaces=None):
        body = {"stage": "stage", "key": "k", "metrics": {}, "publish_id": name}
        staged = _staged(tmp_path / f"{name}._tmp-1-x", text)
        return _publish("stage", staged, final, body, replaces), staged

    first, _ = attempt("first", "AAAAA")
    second, staged = attempt("second", "BBBBB")
    assert first["publish_id"] == second["publish_id"] == "first" and not Path(staged).exists()
    assert (Path(final) / "split" / "part-00000.parquet").read_text() == "AAAAA"
    replaced, _ = attempt("third", "CCCCC", replaces=first)  # reuse=false: the folder it found is replaced
    assert replaced["publish_id"] == "third" and (Path(final) / "split" / "part-00000.parquet").read_text() == "CCCCC"
    (Path(final) / "state.json").unlink()  # a damaged folder is no winner: replaced
    fourth, _ = attempt("fourth", "DDDDD")
    assert fourth["publish_id"] == "fourth" and manifest.problem(final, fourth) is None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["stage-k"]


class _RayTaskError(Exception):  # what a Ray task's failure looks like to the driver: the original in `.cause`
    def __init__(self, cause: BaseException) -> None:
        super().__init__("ray::task failed")
        self.cause = cause


def test_store_faults_are_one_line_naming_the_object_and_everything_else_passes():
    import errno as errnos

    throttled = OSError("When reading information for key 'runs/.cache/x/part-00000.parquet' in bucket 'b': AWS "
                        "Error SLOW_DOWN during HeadObject operation: Please reduce your request rate.")
    fault = storage.storage_error(_RayTaskError(throttled), "s3://b/runs/.cache/x")
    assert fault is not None and fault.exit_code == 5 and fault.kind == "storage error"
    assert str(fault).startswith("S3 request for s3://b/runs/.cache/x/part-00000.parquet still failing after ")
    assert "(HeadObject SLOW_DOWN)" in str(fault)
    full = OSError(errnos.ENOSPC, "No space left on device", "/cache/x._tmp-1-a/part-00000.parquet")
    fault = storage.storage_error(full, "/cache/x")
    assert fault is not None and str(fault).startswith(
        "no space left on device writing /cache/x._tmp-1-a/part-00000.parquet: nothing of the stage was published")
    arrow = OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert str(storage.storage_error(arrow, "/cache/x")).startswith("no space left on device writing /cache/x:")
    assert storage.storage_error(FileNotFoundError(2, "No such file or directory", "/x"), "/x") is None
    assert storage.storage_error(ValueError("a bug"), "/x") is None
