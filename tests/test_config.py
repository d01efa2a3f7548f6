"""Config composition and validation: every group option composes, and bad values fail naming the key."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys

import pytest

from kon_ray.config import CONF_DIR, KonConfig, dataset_choices, load_config
from kon_ray.errors import ConfigError
from tests.conftest import REPO, compose_config


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_the_three_datasets_are_declared():
    assert dataset_choices() == ["CLIE", "HFAC", "POLA"]


# The values a user must give with a cluster choice (each choice's own config says so when they are missing).
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:0.1.0"
# what the infra outputs give a remote cluster (terraform output; README "Running beyond one machine")
NETWORK = ["cluster.security_group_id=sg-0123456789abcdef0", "cluster.subnet_id=subnet-0123456789abcdef0",
           "cluster.kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555",
           "cluster.auth_token_secret=arn:aws:secretsmanager:eu-west-1:123456789012:secret:kon-ray-dev-ray-token-AbCdEf"]
CLUSTER_NEEDS = {
    "ray": ["cluster.address=http://127.0.0.1:8265"],
    "ec2": [f"cluster.image={IMAGE}", *NETWORK,
            "cluster.instance_profile_arn=arn:aws:iam::123456789012:instance-profile/kon-ray-dev-ray-node"],
    "sagemaker": [f"cluster.image={IMAGE}", "cluster.role_arn=arn:aws:iam::123456789012:role/kon",
                  "cluster.s3_output=s3://bucket/kon-ray", *NETWORK],
}


@pytest.mark.parametrize("dataset", ["CLIE", "HFAC", "POLA"])
def test_every_option_of_every_group_composes(dataset, tmp_path):
    groups = {group: _options(group) for group in ("model", "cluster", "drift", "tracking", "debug")}
    for choice in itertools.product(*groups.values()):
        overrides = [f"+dataset={dataset}"] + [f"{g}={c}" for g, c in zip(groups, choice)]
        overrides += CLUSTER_NEEDS.get(choice[1], [])
        config = load_config(compose_config(overrides, tmp_path))
        assert isinstance(config, KonConfig)
        assert config.dataset.name == dataset


@pytest.mark.parametrize("cluster, key", [("ray", "cluster.address"), ("ec2", "cluster.image"),
                                          ("sagemaker", "cluster.image")])
def test_a_cluster_choice_without_its_required_value_names_the_key(cluster, key, tmp_path):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(compose_config(["+dataset=POLA", f"cluster={cluster}"], tmp_path))


def test_config_is_frozen(tmp_path):
    config = load_config(compose_config(["+dataset=POLA"], tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]


def test_missing_dataset_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"\+dataset=.*CLIE, HFAC, POLA"):
        load_config(compose_config([], tmp_path))


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.max_depth=0", "model.max_depth"),
        ("model.eta=-0.1", "model.eta"),
        ("drift.psi_moderate=0.3", "drift.psi_moderate"),
        ("drift.psi_bins=1", "drift.psi_bins"),
        ("split.test_fraction=1.5", "split.test_fraction"),
        ("split.train_per_class=-500", "split.train_per_class"),
        ("cluster.train_workers=0", "cluster.train_workers"),
        ("stages=[ingest,trian]", "trian"),
    ],
)
def test_bad_values_name_the_key(override, key, tmp_path):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(compose_config(["+dataset=POLA", override], tmp_path))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kon_ray.run", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_without_dataset_says_what_to_add():
    result = _cli("hydra.run.dir=/tmp/kon_ray_test_cli")
    assert result.returncode == 2
    assert "+dataset=" in result.stderr and "CLIE, HFAC, POLA" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unknown_key_is_a_config_error():
    result = _cli("+dataset=POLA", "model.depth=3", "hydra.run.dir=/tmp/kon_ray_test_cli")
    assert result.returncode == 2
    assert "unknown config key model.depth: did you mean model.max_depth?" in result.stderr
    assert "To append" not in result.stderr  # Hydra's advice would lead to `+model.depth=3`: not a key either


@pytest.mark.parametrize(
    "override, line",
    [
        ("+model.max_dept=4", "unknown config key model.max_dept: did you mean model.max_depth?"),
        ("+split.typo=1", "unknown config key split.typo"),
    ],
)
def test_a_key_added_with_plus_must_be_in_the_schema(override, line, tmp_path):
    with pytest.raises(ConfigError, match=line.replace(".", r"\.").replace("?", r"\?")):
        load_config(compose_config(["+dataset=POLA", override], tmp_path))


def test_cli_bad_value_is_one_line_naming_the_key():
    result = _cli("+dataset=POLA", "drift.psi_high=0.05", "hydra.run.dir=/tmp/kon_ray_test_cli")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "config error" in line]
    assert len(errors) == 1 and "drift.psi_high" in errors[0]


def test_cli_prints_the_composed_config():
    result = _cli("+dataset=POLA", "--cfg", "job")
    assert result.returncode == 0
    assert "name: POLA" in result.stdout and "max_depth:" in result.stdout


def test_debug_tiny_makes_the_whole_run_tiny(tmp_path):
    """debug=tiny composed as each command composes it (no Ray): the generator a 3,000-row sample, the pipeline small
    models and a small Ray, nothing else changed; the same dataset config for both; drift's bins valid at that size."""
    from tests.synth.conftest import composed as composed_for_the_generator

    default = load_config(compose_config(["+dataset=POLA"], tmp_path))
    tiny = load_config(compose_config(["+dataset=POLA", "debug=tiny"], tmp_path))
    assert (tiny.model.num_boost_round, tiny.model.early_stopping_rounds) == (20, 5)
    assert tiny.cluster.object_store_gb == 1.0 and tiny.cluster.kind == "local"
    assert dataclasses.replace(tiny, model=default.model, cluster=default.cluster, synth=default.synth) == default
    assert dataclasses.replace(tiny.model, num_boost_round=200, early_stopping_rounds=10) == default.model

    generator = composed_for_the_generator("POLA", "debug=tiny")
    assert generator.synth == dataclasses.replace(default.synth, rows=3000)
    assert generator.dataset == tiny.dataset  # one dataset config, whichever command composes it
    current = generator.synth.rows * tiny.split.current_months // generator.synth.months  # ~750 records
    assert current >= 50 * tiny.drift.psi_bins  # at least 50 expected records per PSI bin in the current window


def test_debug_tiny_leaves_the_dataset_to_the_command_line(tmp_path):
    """Why debug=tiny sets no dataset.* (conf/debug/tiny.yaml): the dataset's size caps are no-ops at the tiny
    sample (the fit is exact, one batch per unit); and a dataset.* value given on the command line beside
    debug=tiny reaches both commands, with the overlay's own values kept."""
    from tests.synth.conftest import composed as composed_for_the_generator

    tiny = load_config(compose_config(["+dataset=POLA", "debug=tiny"], tmp_path))
    rows = composed_for_the_generator("POLA", "debug=tiny").synth.rows
    assert rows == 3000
    assert tiny.dataset.features.fit_sample_rows >= rows and tiny.dataset.features.batch_rows >= rows

    given = ["dataset.segment.clusters=3", "dataset.features.fit_sample_rows=500"]
    pipeline = load_config(compose_config(["+dataset=POLA", "debug=tiny", *given], tmp_path))
    generator = composed_for_the_generator("POLA", "debug=tiny", *given)
    for dataset in (pipeline.dataset, generator.dataset):
        assert (dataset.segment.clusters, dataset.features.fit_sample_rows) == (3, 500)
    assert pipeline.model.num_boost_round == 20 and generator.synth.rows == 3000
    assert dataclasses.replace(pipeline.dataset, segment=tiny.dataset.segment,
                               features=tiny.dataset.features) == tiny.dataset


# ---- one schema per kind of cluster (kon_ray/cluster/config.py) ---------------------------------------------------

def test_each_cluster_kind_composes_to_its_own_schema(tmp_path):
    """conf/cluster/<kind>.yaml validates against its kind's dataclass, which holds only that kind's keys."""
    from kon_ray.cluster.config import CLUSTER_SCHEMAS, ClusterConfig

    for kind, schema in CLUSTER_SCHEMAS.items():
        cluster = load_config(compose_config(["+dataset=POLA", f"cluster={kind}", *CLUSTER_NEEDS.get(kind, [])],
                                             tmp_path)).cluster
        assert type(cluster) is schema and cluster.kind == kind
        assert isinstance(cluster, ClusterConfig)
        for other_kind, other in CLUSTER_SCHEMAS.items():
            only_other = {f.name for f in dataclasses.fields(other)} - {f.name for f in dataclasses.fields(schema)}
            assert not any(hasattr(cluster, key) for key in only_other), (kind, other_kind)
    assert {f.name for f in dataclasses.fields(ClusterConfig)} == {
        "kind", "train_workers", "cpus_per_train_worker", "storage_path"}


@pytest.mark.parametrize(
    "cluster, override, line",
    [
        ("local", "+cluster.instance_count=2",
         "unknown config key cluster.instance_count: a key of cluster=sagemaker, not of cluster=local (whose keys are"
         " kind, train_workers, cpus_per_train_worker, storage_path, address, num_cpus, object_store_gb,"
         " data_cpu_reserve)"),
        ("ray", "+cluster.object_store_gb=2", "unknown config key cluster.object_store_gb: a key of cluster=local,"
         " not of cluster=ray"),
        ("sagemaker", "+cluster.address=http://h:8265", "unknown config key cluster.address: a key of"
         " cluster=local|ray|ec2, not of cluster=sagemaker"),
    ],
)
def test_a_key_of_another_cluster_kind_is_an_unknown_key(cluster, override, line, tmp_path):
    """Composed with `+` (Hydra lets it through), the key is refused when the config is loaded, naming the kind."""
    cfg = compose_config(["+dataset=POLA", f"cluster={cluster}", *CLUSTER_NEEDS.get(cluster, []), override], tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert line in str(err.value) and "\n" not in str(err.value)


def test_cluster_kind_names_the_schema_and_is_chosen_with_the_group(tmp_path):
    with pytest.raises(ConfigError, match="cluster.kind is 'ray' but the config composed is cluster=local's: choose"
                                          " the kind with cluster=ray"):
        load_config(compose_config(["+dataset=POLA", "cluster.kind=ray"], tmp_path))


def test_debug_tiny_sizes_only_a_local_ray(tmp_path):
    """debug=tiny's object store is a key of cluster=local's schema only (conf/debug/cluster/tiny_local.yaml); with a
    remote kind the overlay composes without it (test_every_option_of_every_group_composes composes them all)."""
    tiny = load_config(compose_config(["+dataset=POLA", "debug=tiny"], tmp_path)).cluster
    assert tiny.object_store_gb == 1.0
    given = load_config(compose_config(["+dataset=POLA", "debug=tiny", "cluster.object_store_gb=2"], tmp_path))
    assert given.cluster.object_store_gb == 2.0  # the command line still wins
    remote = load_config(compose_config(["+dataset=POLA", "debug=tiny", "cluster=ray", *CLUSTER_NEEDS["ray"]],
                                        tmp_path))
    assert remote.model.num_boost_round == 20 and not hasattr(remote.cluster, "object_store_gb")


def test_each_kind_knows_its_node_count():
    from kon_ray.cluster.config import LocalCluster, RayCluster, of_kind

    assert LocalCluster().node_count() == 1
    assert RayCluster(address="http://h:8265").node_count() is None
    assert RayCluster(address="http://h:8265", nodes=3).node_count() == 3
    with pytest.raises(ConfigError, match="a local path, but cluster=ray may run on 3 nodes"):
        RayCluster(address="http://h:8265", nodes=3).check_shared_storage("/tmp/run")
    assert of_kind(LocalCluster(), LocalCluster) == LocalCluster()
    with pytest.raises(TypeError, match="RayCluster expected, got cluster=local's LocalCluster"):
        of_kind(LocalCluster(), RayCluster)
