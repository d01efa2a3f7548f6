"""terraform init / validate / test, offline, against a local filesystem mirror of hashicorp/aws.

The project's machines cannot download providers, but some carry hashicorp/aws in a plugin directory
(registry.terraform.io/hashicorp/aws/<version>/<os_arch>/terraform-provider-aws_*). When one is found,
every root is initialised from it (a CLI config with only a filesystem_mirror: nothing is fetched), checked
against its committed .terraform.lock.hcl, validated, and infra/live's `terraform test` (mocked provider,
plan-level security assertions in infra/live/tests/) runs. Without terraform or a mirror these tests SKIP and
say why; the GitHub `terraform` workflow runs the same commands against the registry.

The init is done once per session, into a temporary TF_DATA_DIR (nothing is written to the repository); the
provider is linked from the mirror (used as the plugin cache), not copied.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from infra_helpers import INFRA

pytestmark = pytest.mark.slow  # terraform init, validate and test: about 30 s on 2 cores

ROOTS = ("live", "bootstrap")
MIRROR_CANDIDATES = (
    os.environ.get("KON_TF_PROVIDER_MIRROR", ""),
    "/opt/tf-plugins",
    str(Path.home() / ".terraform.d" / "plugins"),
    str(Path.home() / ".local" / "share" / "terraform" / "plugins"),
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)


def _os_arch() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


def _find_mirror() -> str | None:
    for base in MIRROR_CANDIDATES:
        if base and glob.glob(f"{base}/registry.terraform.io/hashicorp/aws/*/{_os_arch()}/terraform-provider-aws*"):
            return base
    return None


@pytest.fixture(scope="session")
def terraform_offline(tmp_path_factory):
    """{root: env} for running terraform in each initialised root; skips with the reason when impossible."""
    terraform = os.environ.get("TERRAFORM") or shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform binary not found on PATH (install terraform >= 1.11 or set TERRAFORM)")
    mirror = _find_mirror()
    if not mirror:
        pytest.skip(
            "no local filesystem mirror of hashicorp/aws for " + _os_arch() + " (looked in "
            + ", ".join(c for c in MIRROR_CANDIDATES if c) + "; set KON_TF_PROVIDER_MIRROR): "
            "terraform init/validate/test run in the GitHub terraform workflow instead"
        )
    tmp = tmp_path_factory.mktemp("terraform")
    cli = tmp / "offline.tfrc"
    # The mirror doubles as the plugin cache: init links the unpacked provider instead of copying ~700 MB.
    cli.write_text(
        f'plugin_cache_dir = "{mirror}"\n'
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        "}\n"
    )
    envs = {}
    for root in ROOTS:
        env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(cli),
            "TF_DATA_DIR": str(tmp / root),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        # -lockfile=readonly: the committed lock must already list the mirror's provider.
        proc = subprocess.run(
            [terraform, "init", "-backend=false", "-lockfile=readonly", "-no-color"],
            cwd=INFRA / root, env=env, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, (
            f"terraform init (offline mirror {mirror}) failed in infra/{root}:\n{proc.stdout}\n{proc.stderr}"
        )
        envs[root] = (terraform, env)
    return envs


@pytest.mark.parametrize("root", ROOTS)
def test_lock_file_is_committed_and_pins_the_aws_provider(root):
    lock = INFRA / root / ".terraform.lock.hcl"
    assert lock.is_file(), f"infra/{root}/.terraform.lock.hcl must be committed"
    text = lock.read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in text and "hashes = [" in text


@pytest.mark.parametrize("root", ROOTS)
def test_terraform_validate(terraform_offline, root):
    terraform, env = terraform_offline[root]
    proc = subprocess.run([terraform, "validate", "-no-color"], cwd=INFRA / root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"terraform validate failed in infra/{root}:\n{proc.stdout}\n{proc.stderr}"


def test_terraform_test_security_properties_with_a_mocked_provider(terraform_offline):
    terraform, env = terraform_offline["live"]
    proc = subprocess.run([terraform, "test", "-no-color"], cwd=INFRA / "live", env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"terraform test failed in infra/live:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert "0 failed" in proc.stdout and " passed" in proc.stdout, proc.stdout[-2000:]
