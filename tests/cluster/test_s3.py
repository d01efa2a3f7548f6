"""S3 everywhere: a run reading its data from and writing its run folder to a moto S3 server on 127.0.0.1.

Credentials come from the environment (the standard AWS chain; fake ones for moto) and the endpoint from
AWS_ENDPOINT_URL, exactly as a real S3-compatible store would be reached. Parametrized by stages: the stage
owners extend STAGE_OUTPUTS as the later stages land.
"""

from __future__ import annotations

import json

import boto3
import pytest

from kon_ray import storage
from tests.cluster.conftest import write_tiny_dataset
from tests.conftest import compose_config

BUCKET = "kon-test"

# stages to run -> {stage folder: files in it}. The run folder on S3 holds one pointer per stage,
# <run>/<folder>.json = {"stage", "location"}, to the stage's keyed folder in the cache beside it (kon_ray/pipeline.py).
STAGE_OUTPUTS = {
    ("ingest",): {"ingest": ["ingest.json"]},
    ("ingest", "preprocess", "segment", "drift"): {
        "ingest": ["ingest.json"],
        "features": ["feature_state.json", "split_summary.json"],
        "segment": ["segment_state.json"],
        "drift": ["drift_report.json", "drift_summary.txt", "drift_report.html"],
    },
}
ROWS = 2000


@pytest.fixture(scope="module")
def bucket(moto_endpoint) -> str:
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    write_tiny_dataset(f"s3://{BUCKET}/POLA", rows=ROWS)
    return BUCKET


def test_storage_round_trip_on_s3(bucket: str) -> None:
    path = f"s3://{bucket}/scratch/x.json"
    storage.write_json(path, {"a": 1})
    assert storage.read_json(path) == {"a": 1} and storage.exists(path)
    assert storage.list_files(f"s3://{bucket}/POLA") == [f"{bucket}/POLA/part-00000.parquet",
                                                        f"{bucket}/POLA/part-00001.parquet"]


@pytest.mark.slow  # a pipeline run on Ray against S3
@pytest.mark.parametrize("stages", list(STAGE_OUTPUTS))
def test_run_reads_and_writes_s3(bucket: str, stages, request, tmp_path) -> None:
    from kon_ray.config import load_config, to_plain
    from kon_ray.run import run

    if set(stages) - {"ingest"}:  # ingest reads Parquet metadata with pyarrow only; later stages need Ray
        request.getfixturevalue("ray_session")

    name = "-".join(stages)
    run_dir = f"s3://{bucket}/runs/{name}"
    cfg = compose_config(
        ["+dataset=POLA", f"dataset.path=s3://{bucket}/POLA", f"stages=[{','.join(stages)}]", "tracking=off"],
        tmp_path,
    )
    cfg.output_dir = run_dir
    run(load_config(cfg), to_plain(cfg))
    s3 = boto3.client("s3", region_name="eu-west-1")
    for folder, files in STAGE_OUTPUTS[stages].items():
        pointer = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/{name}/{folder}.json")["Body"].read())
        assert pointer["location"].startswith(f"s3://{bucket}/")
        for rel in files:
            key = storage.join(pointer["location"], rel)[len(f"s3://{bucket}/"):]
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    staged_left = s3.list_objects_v2(Bucket=bucket, Prefix=f"{storage.S3_STAGING_PREFIX}/runs/{name}/")
    # every stage's staged objects were moved out when it published (pyarrow's empty directory markers may stay)
    assert [o["Key"] for o in staged_left.get("Contents", []) if o["Size"] > 0] == []
    location = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/{name}/ingest.json")["Body"].read())["location"]
    summary = json.loads(storage.read_text(storage.join(location, "ingest.json")))
    assert summary["rows"] == ROWS and len(summary["files"]) == 2


def test_s3_stages_under_one_prefix_that_the_lifecycle_rule_expires(bucket: str) -> None:
    """Staged objects sit under _kon_staging/ (infra/modules/secure_bucket's `expire-abandoned-staging` rule), not
    beside the final folder, and publishing moves them to the final keys and leaves nothing staged."""
    import os

    final = f"s3://{bucket}/runs/staging-check/.cache/features-abc"
    staged = storage.staging_dir(final)
    assert staged.startswith(f"s3://{bucket}/_kon_staging/runs/staging-check/.cache/features-abc._tmp-{os.getpid()}-")
    storage.write_json(storage.join(staged, "part.json"), {"rows": 3})
    storage.publish(staged, final)
    assert storage.read_json(storage.join(final, "part.json")) == {"rows": 3}
    s3 = boto3.client("s3", region_name="eu-west-1")
    left = s3.list_objects_v2(Bucket=bucket, Prefix="_kon_staging/").get("Contents", [])
    # only pyarrow's empty directory markers of the parents stay (the lifecycle rule expires them); no staged data
    assert [o["Key"] for o in left if not (o["Key"].endswith("/") and o["Size"] == 0)] == []


def test_credentials_are_not_forwarded_to_jobs(bucket: str, tmp_path) -> None:
    import os

    from kon_ray.cluster import jobs
    from kon_ray.config import load_config

    config = load_config(compose_config(["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265"], tmp_path))
    env = jobs.runtime_env(config)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in json.dumps(env)
    assert env["env_vars"]["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
