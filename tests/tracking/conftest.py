"""Fixtures for the tracking tests: a real `mlflow server` on 127.0.0.1, a shared local sqlite store, tiny data,
and a hand-made run folder in the stages' published layout (with two tiny real XGBoost models)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kon_ray.net import free_port  # noqa: F401  (tests import it from here)

from tests.conftest import REPO, compose_config

FEATURES = ["kwh_mean", "kwh_trend", "bill"]
CLASSES = ["low", "mid", "high"]


def subprocess_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("KON_MLFLOW_PARENT_RUN_ID", None)
    env.update(extra)
    return env


# A folder holding another MLflow for the server only (the client stays the locked one), e.g. the version infra/
# gives the SageMaker-managed server: pip install --no-deps --target /tmp/mlflow30 mlflow==3.0.1 mlflow-skinny==3.0.1
# then KON_MLFLOW_SERVER_PATH=/tmp/mlflow30 pytest tests/tracking (README, "Tracking": the supported pair).
SERVER_PATH_ENV = "KON_MLFLOW_SERVER_PATH"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real MLflow tracking server: sqlite backend and proxied artifacts in tmp, a free port; its URI."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = open(root / "server.log", "w")
    older = os.environ.get(SERVER_PATH_ENV)
    env = subprocess_env(PYTHONPATH=os.pathsep.join([older, str(REPO)])) if older else subprocess_env()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a loaded CI machine takes minutes
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {process.returncode}: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer /health in 300 s: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory) -> str:
    """One local sqlite store for the in-process tracker tests (creating a store runs its migrations: seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow_local') / 'mlflow.db'}"


def tiny_table(columns: Dict[str, str], rows: int = 24) -> pa.Table:
    """Rows matching a dataset's declared `columns:` (conf/dataset/*.yaml), whatever they are."""
    data = {}
    for i, (name, kind) in enumerate(columns.items()):
        if kind == "int64":
            data[name] = pa.array(range(rows), pa.int64())
        elif kind == "float64":
            data[name] = pa.array([float(r * (i + 1)) for r in range(rows)], pa.float64())
        elif kind == "string":
            data[name] = pa.array([["a", "b", "c"][r % 3] for r in range(rows)], pa.string())
        elif kind == "bool":
            data[name] = pa.array([r % 2 == 0 for r in range(rows)], pa.bool_())
        else:
            data[name] = pa.array([dt.date(2025, 1 + r % 12, 1) for r in range(rows)], pa.date32())
    return pa.table(data)


@pytest.fixture(scope="session")
def tiny_pola(tmp_path_factory) -> Path:
    """A tiny POLA dataset folder that passes ingest."""
    cfg = compose_config(["+dataset=POLA"])
    folder = tmp_path_factory.mktemp("data") / "POLA"
    folder.mkdir()
    pq.write_table(tiny_table(dict(cfg.dataset.columns)), folder / "part-00000.parquet")
    return folder


def _model(folder: Path, seed: int) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(30, len(FEATURES))), columns=FEATURES)
    y = np.arange(30) % len(CLASSES)
    train, valid = xgb.DMatrix(x[:24], label=y[:24]), xgb.DMatrix(x[24:], label=y[24:])
    curve: dict = {}
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "eta": 0.3, "eval_metric": "mlogloss"}
    booster = xgb.train(params, train, num_boost_round=4, evals=[(train, "train"), (valid, "validation")],
                        evals_result=curve, verbose_eval=False)
    folder.mkdir(parents=True)
    booster.save_model(str(folder / "model.ubj"))
    (folder / "metadata.json").write_text(json.dumps({  # the train stage's layout (kon_ray/train/stage.py)
        "features": FEATURES, "classes": {str(i): c for i, c in enumerate(CLASSES)}, "class_labels": CLASSES,
        "params": params, "training_curve": curve, "best_iteration": 3, "rounds_trained": 4,
        "metrics": {"best_validation_mlogloss": min(curve["validation"]["mlogloss"]), "train_mlogloss_at_best": None},
    }))


def make_run_folder(root: Path) -> Path:
    """A run folder in the layout the stages publish: what the tracker reads and logs."""
    (root / "ingest").mkdir(parents=True)
    (root / "ingest" / "ingest.json").write_text(json.dumps(
        {"path": "data/POLA", "files": ["a.parquet", "b.parquet"], "rows": 30, "schema_hash": "abc", "fingerprint": "f00d"}))
    test = root / "features" / "test"
    test.mkdir(parents=True)
    frame = pd.DataFrame(np.arange(36, dtype=float).reshape(12, 3), columns=FEATURES)
    frame["population"] = ["domestic", "industrial"] * 6
    frame.to_parquet(test / "part-00000.parquet")
    (root / "features" / "feature_state.json").write_text('{"means": {"kwh_mean": 1.0}}')
    (root / "features" / "split_summary.json").write_text('{"train": 20, "test": 10}')
    (root / "drift").mkdir()
    (root / "drift" / "drift_report.json").write_text('{"summary": {"drift_flag": true}, "features": []}')
    (root / "drift" / "drift_summary.txt").write_text("kwh_mean: drift\n")
    (root / "drift" / "drift_report.html").write_text("<html>drift</html>")
    (root / "segment").mkdir()
    (root / "segment" / "segment_state.json").write_text('{"centres": [[0, 1]]}')
    _model(root / "models" / "domestic", 1)
    _model(root / "models" / "industrial", 2)
    (root / "reports").mkdir()
    (root / "reports" / "domestic.json").write_text('{"macro_f1": 0.7}')
    (root / "reports" / "domestic.html").write_text("<html>report</html>")
    return root


STAGE_METRICS = {  # named as the stages return them
    "ingest": {"rows": 30, "files": 2},
    "preprocess": {"train_rows": 20, "test_rows": 10, "cached": 1},
    "drift": {"psi/kwh_mean": 0.31, "psi/bill": 0.02, "drifted_features": 1},
    "segment": {"clusters": 4},
    "train": {"rows": 20, "domestic/rounds": 4, "domestic/validation_mlogloss": 0.81,
              "industrial/validation_mlogloss": 0.72, "note": "not a number"},
    "infer": {"rows": 10, "test/rows": 10, "domestic/test/macro_f1": 0.77, "industrial/test/macro_f1": 0.66},
}
