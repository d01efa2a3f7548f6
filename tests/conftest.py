"""Fixtures shared by the whole suite: one local Ray for every test that needs it, one moto server, composed configs."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Dict, Iterator, Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from kon_ray.config import CONF_DIR, register_configs

REPO = Path(__file__).resolve().parent.parent

# Ray's token authentication adds nothing on a loopback-only test Ray and writes to ~/.ray.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


MLFLOW_EXPORTS = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")


@pytest.fixture(autouse=True)
def _isolated_tracking_env():
    """mlflow.set_tracking_uri() and set_experiment() also set $MLFLOW_TRACKING_URI and $MLFLOW_EXPERIMENT_ID for
    the process; without this, one test's store and experiment would leak into every later test and into the
    subprocesses they start."""
    before = {name: os.environ.pop(name, None) for name in MLFLOW_EXPORTS}
    yield
    for name, value in before.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


# Fake credentials for moto: the standard AWS chain finds them, as it finds real ones on AWS.
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "eu-west-1"}


def moto_environment(endpoint: str) -> Dict[str, str]:
    """What reaches moto at `endpoint` through the standard AWS settings (no code path of its own)."""
    return {**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server on 127.0.0.1 for the session (S3, SageMaker, CloudWatch Logs, Secrets Manager); its URL.
    Tests that use it set `moto_environment` themselves (tests/cluster/conftest.py `moto_endpoint`)."""
    from moto.server import ThreadedMotoServer

    from kon_ray.net import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_session(moto_server) -> Iterator[None]:
    """One local Ray for the session (starting Ray costs seconds): 2 CPUs plus one for Ray Data beside training
    workers, a small object store so that tests exercise spilling rather than hide it. Its workers reach the
    session's moto as the driver does in the tests that set `moto_environment`: a worker's environment is fixed
    when Ray starts, whichever test starts it (under pytest-xdist, any module may be a worker's first)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=3,
            object_store_memory=1024**3,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": moto_environment(moto_server)},
        )
    yield
    # left running for later tests; pytest's exit shuts it down


def compose_config(overrides: Sequence[str] = (), tmp_path: Path | None = None) -> DictConfig:
    """Compose the real conf/ tree with Hydra, as `python -m kon_ray.run` would, outputs under tmp_path."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "run") if tmp_path else "outputs/test"
        if tmp_path and not any(o.startswith(("tracking", "+tracking")) for o in overrides):
            # never the repository's own ./mlflow.db (a `make run` there would hand tests its models)
            cfg.tracking.uri = f"sqlite:///{tmp_path}/mlflow.db"
    return cfg


def generate_pola(folder: Path, rows: int, parts: int = 1) -> Path:
    """Generated POLA data (kon_ray.synth, deterministic) in `folder`, as `parts` Parquet files; the folder."""
    from kon_ray.config import load_config
    from kon_ray.synth.config import SynthConfig
    from kon_ray.synth.writer import generate

    dataset = load_config(compose_config(["+dataset=POLA"])).dataset
    generate(dataset, SynthConfig(rows=rows, rows_per_file=-(-rows // parts)), str(folder))
    return folder


@pytest.fixture
def compose_cfg(tmp_path: Path):
    def _compose(*overrides: str) -> DictConfig:
        return compose_config(overrides, tmp_path)

    return _compose


def pytest_collection_modifyitems(config, items) -> None:
    """The files with the most slow tests first, each file's tests in their own order: `make test`'s two workers
    take whole files in this order (pytest-xdist `--dist loadfile`), so the long ones start early and the short
    ones fill the gaps at the end, instead of one worker running the last long file while the other waits."""
    slow: Dict[str, int] = {}
    for item in items:
        if item.get_closest_marker("slow"):
            slow[item.nodeid.split("::")[0]] = slow.get(item.nodeid.split("::")[0], 0) + 1
    items.sort(key=lambda item: -slow.get(item.nodeid.split("::")[0], 0))  # stable: in-file order is kept


def as_a_terminal_would() -> None:
    """`preexec_fn` of a command a test interrupts: it starts with Ctrl-C's default disposition and SIGINT unblocked,
    as from a shell on a terminal, whatever the test worker's own state (a disposition of SIG_IGN and a blocked mask
    are inherited across exec: a command started from a worker that had either would never see the test's Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
