"""What a complete MLflow record of a whole pipeline run holds, checked against the tracking store itself.

Shared by every test that sends a whole run somewhere (the multi-node cluster, a Ray Job, a fault run, the
after-the-fact `python -m kon_ray.tracking.log`): a run can end FINISHED with half its record missing (issue 26),
so these tests look at what arrived, not at the exit code.
"""

from __future__ import annotations

from typing import Any, Iterable

from kon_ray import stages

POPULATIONS = ("domestic", "industrial")

# one file of each stage a person opens first, and what the registry reads back
EXPECTED_ARTIFACTS = frozenset({
    "ingest/ingest.json", "features/feature_state.json", "features/split_summary.json",
    "drift/drift_report.json", "drift/drift_report.html", "drift/drift_summary.txt", "segment/segment_state.json",
    "models/domestic/metadata.json", "models/industrial/metadata.json",
    "reports/domestic.html", "reports/domestic.json", "reports/industrial.html", "reports/industrial.json",
})


def artifacts(client: Any, run_id: str, path: str = "") -> set:
    found: set = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def assert_complete_record(uri: str, run_id: str, chosen: Iterable[str] = stages.STAGE_ORDER) -> Any:
    """The run at `uri` holds what every stage of a whole run logs: params, each stage's time and metrics, the
    stage files, both logged models with their curves; it ended FINISHED with nothing reported missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert run.info.status == "FINISHED" and tags["status"] == "finished", (run.info.status, tags.get("error"))
    assert "tracking_incomplete" not in tags, tags["tracking_incomplete"]
    assert params["dataset.name"] == "POLA" and "model.eta" in params and "data.fingerprint" in params
    chosen = list(chosen)
    assert {f"time/{stage}" for stage in chosen} <= set(metrics), sorted(metrics)
    assert metrics["ingest/rows"] > 0 and any(key.startswith("psi/") for key in metrics)
    found = artifacts(client, run_id)
    assert EXPECTED_ARTIFACTS <= found, sorted(EXPECTED_ARTIFACTS - found)
    for population in POPULATIONS:
        assert f"{population}/test/macro_f1" in metrics, sorted(metrics)
        model = client.get_logged_model(tags[f"model_id.{population}"])
        assert model.source_run_id == run_id and getattr(model.status, "value", model.status) == "READY", model
        assert client.get_metric_history(run_id, f"{population}/curve/validation_mlogloss")
    return run
