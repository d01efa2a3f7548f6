"""A SageMaker-managed MLflow URI, `arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME`, resolved and signed
by the real sagemaker-mlflow plugin (requirements.lock), logs a whole run.

What stands in for AWS, and why: the plugin, on this path, makes no AWS API call at all (no
DescribeMlflowTrackingServer; presigned URLs only for the UI, sagemaker_mlflow/presigned_url.py). It maps the ARN to
the region's MLflow endpoint, `https://REGION.experiments.sagemaker.aws` (SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT replaces
it, a setting of the plugin itself), adds the header `x-mlflow-sm-tracking-server-arn` and signs every MLflow REST
request with SigV4 (service `sagemaker-mlflow`). moto does not serve that endpoint, so it is a small local stand-in
of exactly those calls: an HTTP server on 127.0.0.1 that recomputes each request's SigV4 signature with botocore
(the test's credentials, the ARN's region) and checks the ARN header, rejects anything else with 403, and proxies
the rest to a real `mlflow server` of the version a SageMaker-managed server runs (infra/'s `mlflow_version`:
`mlflow_server_pair`, tests/tracking/conftest.py). Artifacts go where a SageMaker server's go, to the experiment's
s3:// location, written by the client with boto3: that S3 is moto's server (moto covers those calls).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Tuple

import pytest

from kon_ray.config import load_config, to_plain
from kon_ray.net import free_port
from tests.conftest import REPO, compose_config
from tests.tracking.test_tracker import _artifacts

REGION, ACCOUNT, NAME = "eu-west-1", "123456789012", "kon-ray-dev-mlflow"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/{NAME}"
KEY, SECRET = "AKIDKONRAYTEST", "kon-ray-test-secret"
BUCKET = "kon-ray-dev-mlflow"
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")


class SageMakerMlflowStandIn(ThreadingHTTPServer):
    """The region's SageMaker MLflow endpoint, as far as the plugin can tell: SigV4 checked, then MLflow."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.upstream = upstream
        self.accepted: List[Tuple[str, str]] = []
        self.rejected: List[Tuple[str, str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def problem(self, method: str, path: str, headers, body: bytes) -> str | None:
        """Why the request would be refused by SageMaker's endpoint, or None when it is signed as it must be."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        match = _AUTH.match(headers.get("Authorization", ""))
        if not match:
            return "no SigV4 Authorization header"
        key, _day, region, service, signed, signature = match.groups()
        if (key, region, service) != (KEY, REGION, "sagemaker-mlflow"):
            return f"credential scope {key}/{region}/{service}"
        if headers.get("x-mlflow-sm-tracking-server-arn") != ARN or "x-mlflow-sm-tracking-server-arn" not in signed:
            return "no signed x-mlflow-sm-tracking-server-arn header for the ARN"
        if headers.get("X-Amz-Content-SHA256") != hashlib.sha256(body).hexdigest():
            return "X-Amz-Content-SHA256 is not the body's hash"
        request = AWSRequest(method=method, url=f"http://{headers['Host']}{path}", data=body,
                             headers={name: headers[name] for name in signed.split(";")})
        request.context["timestamp"] = headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials(KEY, SECRET), service, region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return None if expected == signature else "signature mismatch"


class _Handler(BaseHTTPRequestHandler):
    server: SageMakerMlflowStandIn

    def log_message(self, *args) -> None:  # quiet
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        problem = self.server.problem(self.command, self.path, self.headers, body)
        if problem:
            self.server.rejected.append((self.command, self.path, problem))
            self._reply(403, json.dumps({"error_code": "PERMISSION_DENIED", "message": problem}).encode(),
                        "application/json")
            return
        self.server.accepted.append((self.command, self.path))
        forward = urllib.request.Request(self.server.upstream + self.path, data=body if body else None,
                                         method=self.command,
                                         headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        try:
            with urllib.request.urlopen(forward, timeout=60) as response:
                self._reply(response.status, response.read(), response.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as error:
            self._reply(error.code, error.read(), error.headers.get("Content-Type", ""))

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle


@pytest.fixture(scope="module")
def sagemaker_endpoint(mlflow_server_pair) -> Iterator[SageMakerMlflowStandIn]:
    stand_in = SageMakerMlflowStandIn(mlflow_server_pair)
    thread = threading.Thread(target=stand_in.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stand_in.shutdown()
        stand_in.server_close()


@pytest.fixture
def aws_env(monkeypatch, sagemaker_endpoint, moto_server) -> None:
    """The test's AWS identity, the stand-in as the region's MLflow endpoint, the session's moto (tests/conftest.py)
    as the S3 of the server's artifact store."""
    for key, value in dict(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION,
                           SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT=sagemaker_endpoint.url, AWS_ENDPOINT_URL_S3=moto_server,
                           MLFLOW_S3_ENDPOINT_URL=moto_server).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "SAGEMAKER_MLFLOW_ASSUME_ROLE_ARN",
                "SAGEMAKER_PRESIGNED_URL_UPLOAD_ENABLED"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.slow  # the stand-in and a real mlflow server start for it
def test_the_stand_in_refuses_what_is_not_signed(sagemaker_endpoint):
    """The stand-in is a real check: an unsigned request (plain MLflow REST) is refused, and never reaches MLflow."""
    request = urllib.request.Request(f"{sagemaker_endpoint.url}/api/2.0/mlflow/experiments/search", method="POST",
                                     data=b'{"max_results": 1}', headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert sagemaker_endpoint.rejected[-1][2] == "no SigV4 Authorization header"


@pytest.mark.slow  # a whole run folder (two models) through the plugin
def test_a_sagemaker_arn_tracking_uri_resolves_signs_and_logs_a_run(tmp_path, mlflow_server_pair, sagemaker_endpoint,
                                                                     aws_env, pipeline_run):
    import boto3
    from mlflow.tracking import MlflowClient

    from kon_ray.tracking.tracker import tracked_run

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    # a SageMaker server gives every experiment a location in its artifact store (infra: artifact_store_uri)
    direct = MlflowClient(mlflow_server_pair)
    direct.create_experiment("sagemaker-arn", artifact_location=f"s3://{BUCKET}/sagemaker-arn")

    cfg = compose_config(["+dataset=POLA", f"tracking.uri={ARN}", "tracking.experiment=sagemaker-arn"], tmp_path)
    accepted_before, rejected_before = len(sagemaker_endpoint.accepted), len(sagemaker_endpoint.rejected)
    with tracked_run(load_config(cfg), to_plain(cfg)) as tracker:
        assert tracker.uri == ARN
        pipeline_run.log_to(tracker)

    # every call went through the plugin, signed for the ARN: none refused, and the run's calls all arrived
    assert sagemaker_endpoint.rejected[rejected_before:] == []
    calls = sagemaker_endpoint.accepted[accepted_before:]
    assert ("POST", "/api/2.0/mlflow/runs/create") in calls and ("POST", "/api/2.0/mlflow/runs/update") in calls
    assert any(path == "/api/2.0/mlflow/runs/log-batch" for _, path in calls)

    # read back from the MLflow server itself, not through the plugin
    (run,) = direct.search_runs([direct.get_experiment_by_name("sagemaker-arn").experiment_id])
    drift = pipeline_run.metrics["drift"]
    assert run.info.status == "FINISHED" and run.data.tags["drift_flag"] == str(bool(drift["drift_flag"])).lower()
    assert run.data.metrics["psi/kwh_lag01"] == drift["psi/kwh_lag01"] and run.data.params["data.rows"] == "3000"
    assert run.info.artifact_uri == f"s3://{BUCKET}/sagemaker-arn/{run.info.run_id}/artifacts"
    keys = {obj["Key"] for obj in boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=BUCKET, Prefix=f"sagemaker-arn/{run.info.run_id}/artifacts/")["Contents"]}
    prefix = f"sagemaker-arn/{run.info.run_id}/artifacts/"
    assert {prefix + "drift/drift_report.html", prefix + "models/domestic/metadata.json"} <= keys
    assert {"drift/drift_report.html", "ingest/ingest.json"} <= _artifacts(direct, run.info.run_id)
    assert set(run.data.tags) >= {"model_id.domestic", "model_id.industrial"}  # models logged through the plugin
    for population in ("domestic", "industrial"):  # and the metrics logged after them (lost before, on a 3.0 server)
        test_f1 = pipeline_run.metrics["infer"][f"{population}/test/macro_f1"]
        assert run.data.metrics[f"{population}/test/macro_f1"] == test_f1


def _pinned(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==([\w.]+) \\\n(\s+--hash=sha256:[0-9a-f]{{64}}.*\n)+",
                      (REPO / "requirements.lock").read_text(), re.M)
    assert match, f"{name} is not pinned with hashes in requirements.lock"
    return match.group(1)


def test_the_image_has_the_plugin_and_the_server_client_pair_is_written_down():
    """The Dockerfile installs the lock, hash-checked; the lock pins the plugin, its boto3 and the client; the
    server version of every Terraform layer is one value, and README and infra/README name that exact pair."""
    plugin, client, _ = _pinned("sagemaker-mlflow"), _pinned("mlflow"), _pinned("boto3")
    install = "pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock"
    assert install in (REPO / "Dockerfile").read_text()
    servers = set()
    for variables in ("infra/modules/mlflow_tracking/variables.tf", "infra/modules/kon_ray_stack/variables.tf",
                      "infra/live/variables.tf"):
        block = re.search(r'variable "mlflow_version" \{(.*?)\n\}', (REPO / variables).read_text(), re.S)
        servers.add(re.search(r'default\s*=\s*"([^"]+)"', block.group(1)).group(1))
    for main in ("infra/live/main.tf", "infra/modules/kon_ray_stack/main.tf"):  # passed down, never hard-coded
        assert re.findall(r"mlflow_version\s*=\s*(\S+)", (REPO / main).read_text()) == ["var.mlflow_version"]
    (server,) = servers
    readme = " ".join((REPO / "README.md").read_text().split())
    pair = f"Version pair in use: server `{server}`, client `mlflow=={client}`, plugin `sagemaker-mlflow=={plugin}`"
    assert pair in readme
    infra = " ".join((REPO / "infra/README.md").read_text().split())
    assert f"`mlflow_version` (default `{server}`" in infra and f"`mlflow=={client}` from the lock" in infra
    # the server the tests check the client against (tests/tracking/conftest.py, mlflow_server_pair) is that version
    (tested,) = re.findall(r"^mlflow==(\S+)", (REPO / "requirements-mlflow-server.lock").read_text(), re.M)
    assert tested.split(".")[:2] == server.split("."), (tested, server)
