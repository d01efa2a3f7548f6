"""Security properties of the GitHub Actions workflows in .github/workflows/."""

from __future__ import annotations

import re

import pytest
import yaml
from infra_helpers import ENVS, WORKFLOWS

WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
USES_RE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
PINNED_RE = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT_RE = re.compile(r"^v\d+\.\d+\.\d+\b")
WRITE_SCOPES_ALLOWED = {"id-token"}  # OIDC only; nothing else may be written


def load(path):
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as boolean True.
    if True in doc and "on" not in doc:
        doc["on"] = doc.pop(True)
    return doc


def triggers(doc) -> dict:
    on = doc["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {t: None for t in on}
    return on


def steps(job):
    return job.get("steps", [])


def run_text(job) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def uses(job) -> list[str]:
    return [s["uses"] for s in steps(job) if "uses" in s]


@pytest.fixture(scope="module")
def workflows():
    assert WORKFLOW_FILES, "no workflow under .github/workflows"
    return {p.name: load(p) for p in WORKFLOW_FILES}


def test_expected_workflows_exist(workflows):
    assert {"ci.yml", "image.yml", "terraform.yml"} <= set(workflows)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actions_pinned_by_full_sha_with_version_comment(path):
    found = 0
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = USES_RE.match(line)
        if not m:
            continue
        found += 1
        ref = m.group("ref").strip("'\"")
        if ref.startswith("./") or ref.startswith("docker://"):
            assert not ref.startswith("docker://") or "@sha256:" in ref, (
                f"{path.name}:{lineno} docker image not pinned by digest"
            )
            continue
        assert PINNED_RE.match(ref), f"{path.name}:{lineno} {ref} is not pinned to a 40-hex commit SHA"
        assert m.group("comment") and VERSION_COMMENT_RE.match(m.group("comment")), (
            f"{path.name}:{lineno} pinned action needs a '# vX.Y.Z' comment"
        )
    assert found, f"{path.name} uses no action?"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_least_privilege_permissions(path):
    doc = load(path)
    top = doc.get("permissions")
    assert top == {"contents": "read"}, f"{path.name}: top-level permissions must be exactly contents: read, got {top}"
    for name, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        assert isinstance(perms, dict), f"{path.name}:{name}: permissions must be explicit scopes, not {perms!r}"
        for scope, level in perms.items():
            if level == "write":
                assert scope in WRITE_SCOPES_ALLOWED, f"{path.name}:{name}: unexpected write scope {scope}"
        if "id-token" in perms:
            assert any("configure-aws-credentials" in u for u in uses(job)), (
                f"{path.name}:{name}: id-token without AWS OIDC use"
            )


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_aws_access_is_oidc_only(path):
    text = path.read_text()
    for forbidden in (
        "aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-session-token"
    ):
        assert forbidden not in text, f"{path.name} references stored AWS keys ({forbidden})"
    assert not re.search(r"secrets\.AWS_", text), f"{path.name} reads AWS credentials from secrets"
    doc = load(path)
    for name, job in doc["jobs"].items():
        for s in steps(job):
            if "configure-aws-credentials" in s.get("uses", ""):
                assert s.get("with", {}).get("role-to-assume"), f"{path.name}:{name}: no role-to-assume"
                assert job.get("permissions", {}).get("id-token") == "write", (
                    f"{path.name}:{name}: OIDC needs id-token: write"
                )


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_checkout_does_not_persist_the_token(path):
    doc = load(path)
    for name, job in doc["jobs"].items():
        for s in steps(job):
            if s.get("uses", "").startswith("actions/checkout@"):
                assert s.get("with", {}).get("persist-credentials") is False, (
                    f"{path.name}:{name}: set persist-credentials: false"
                )


# ---------------------------------------------------------------- terraform


@pytest.fixture(scope="module")
def terraform_wf(workflows):
    return workflows["terraform.yml"]


def test_terraform_prs_check_every_root_and_plan_dev_only(terraform_wf):
    assert "pull_request" in triggers(terraform_wf)
    pr_jobs = {n: j for n, j in terraform_wf["jobs"].items() if "pull_request" in str(j.get("if", ""))}
    assert pr_jobs, "no pull_request job"
    text = "\n".join(run_text(j) for j in pr_jobs.values())
    for cmd in ("terraform fmt -check", "validate", "test -no-color", "terraform plan"):
        assert cmd in text, f"PR jobs do not run {cmd}"
    assert "infra/live" in text and "infra/bootstrap" in text, "validate every root"
    assert "terraform apply" not in text and "-destroy" not in text, "PR jobs must never change infrastructure"
    planners = [j for j in pr_jobs.values() if "terraform plan" in run_text(j)]
    assert len(planners) == 1 and "strategy" not in planners[0]
    assert planners[0].get("environment") == "dev-plan", "pull requests plan dev only, in the dev-plan environment"
    assert "-var-file=dev.tfvars" in run_text(planners[0]) and "staging" not in run_text(planners[0])
    for job in pr_jobs.values():
        assert job.get("environment") in (None, "dev-plan"), (
            "PR jobs must not reach staging/prod or an apply environment"
        )


def test_manual_plans_run_in_the_gated_plan_environment(terraform_wf):
    jobs = terraform_wf["jobs"]
    planners = [j for j in jobs.values() if "-out=tfplan" in run_text(j)]
    assert planners
    for job in planners:
        assert job.get("environment") == "${{ inputs.environment }}-plan"
        assert "vars.AWS_PLAN_ROLE_ARN" in str(job)


def test_terraform_apply_is_gated_by_environment_and_manual(terraform_wf):
    inputs = triggers(terraform_wf)["workflow_dispatch"]["inputs"]
    assert set(inputs["environment"]["options"]) == set(ENVS)
    appliers = {n: j for n, j in terraform_wf["jobs"].items() if "terraform apply" in run_text(j)}
    assert appliers, "no apply job"
    for name, job in appliers.items():
        env = job.get("environment")
        env_name = env.get("name") if isinstance(env, dict) else env
        assert env_name == "${{ inputs.environment }}", (
            f"{name}: apply must run in the target GitHub environment (reviewers on prod)"
        )
        assert "workflow_dispatch" in str(job.get("if", "")), f"{name}: apply only by hand"
        assert "github.ref == 'refs/heads/main'" in str(job.get("if", "")), f"{name}: apply only from main"
        assert "vars.AWS_APPLY_ROLE_ARN" in str(job)
        assert job.get("needs"), f"{name}: apply must follow the plan job"


def test_no_auto_approve_outside_environment_gated_jobs(workflows):
    for wf_name, doc in workflows.items():
        for name, job in doc["jobs"].items():
            text = run_text(job)
            if "-auto-approve" in text or re.search(r"terraform\s+destroy", text):
                assert job.get("environment"), (
                    f"{wf_name}:{name}: -auto-approve/destroy without a GitHub environment gate"
                )
                assert "pull_request" not in triggers(doc) or "workflow_dispatch" in str(job.get("if", "")), (
                    f"{wf_name}:{name}: reachable from pull requests"
                )


def test_apply_uses_the_saved_and_reviewed_plan(terraform_wf):
    jobs = terraform_wf["jobs"]
    planners = [j for j in jobs.values() if "-out=tfplan" in run_text(j)]
    assert planners and any(u.startswith("actions/upload-artifact@") for j in planners for u in uses(j))
    for name, job in jobs.items():
        text = run_text(job)
        if "terraform apply" not in text:
            continue
        assert re.search(r"terraform apply\b[^\n]*\btfplan\b", text), f"{name}: apply must apply the saved plan file"
        assert "-auto-approve" not in text, f"{name}: applying a saved plan needs no -auto-approve"
        assert any(u.startswith("actions/download-artifact@") for u in uses(job)), f"{name}: saved plan not downloaded"


def test_destroy_is_manual_confirmed_and_gated(terraform_wf):
    inputs = triggers(terraform_wf)["workflow_dispatch"]["inputs"]
    assert "destroy" in inputs["action"]["options"]
    assert "confirm_destroy" in inputs
    jobs = terraform_wf["jobs"]
    destroy_planners = [n for n, j in jobs.items() if "-destroy" in run_text(j)]
    assert destroy_planners, "destroy must be a saved plan -destroy"
    for n in destroy_planners:
        assert "workflow_dispatch" in str(jobs[n].get("if", ""))
        assert "confirm_destroy" in str(jobs[n]) or "CONFIRM" in run_text(jobs[n])
    for name, job in jobs.items():
        if "terraform apply" in run_text(job):
            cond = str(job.get("if", ""))
            assert "inputs.confirm_destroy == format('destroy-{0}', inputs.environment)" in cond, (
                f"{name}: a destroy plan must only be applied with the typed confirmation"
            )


# -------------------------------------------------------------------- image


def test_image_workflow_triggers_and_unique_tags(workflows):
    doc = workflows["image.yml"]
    on = triggers(doc)
    assert "workflow_dispatch" in on
    paths = on["push"]["paths"]
    # Everything the Dockerfile copies into the image.
    for p in ("kon_ray/**", "conf/**", "docker/**", "pyproject.toml", "requirements.lock", "Dockerfile"):
        assert p in paths, f"image.yml must build on changes to {p}"
    text = (WORKFLOWS / "image.yml").read_text()
    assert not re.search(r":latest\b", text), "immutable ECR: never push a floating latest tag"
    job = doc["jobs"]["build-push"]
    assert job["environment"] == "dev", "only dev builds"
    build = [s for s in steps(job) if s.get("uses", "").startswith("docker/build-push-action@")]
    assert build and build[0]["with"]["push"] is True
    assert "GITHUB_SHA" in run_text(job), "images must be tagged with the git SHA"


def test_prod_promotes_the_dev_image_by_digest(workflows):
    doc = workflows["image.yml"]
    job = doc["jobs"]["promote"]
    cond = str(job.get("if", ""))
    assert "'prod'" in cond and "github.ref == 'refs/heads/main'" in cond, "promotion to prod only from main"
    assert job["environment"] == "${{ inputs.environment }}", "promotion runs behind the target environment's gate"
    text = run_text(job)
    assert "skopeo copy --preserve-digests" in text and "@${digest}" in text, "copy the tested manifest by digest"
    assert '"${promoted}" != "${digest}"' in text, "check the promoted digest is the tested one"
    assert not any(u.startswith("docker/build-push-action@") for u in uses(job)), "promotion never rebuilds"


# ----------------------------------------------------------------------- ci


def test_ci_runs_lint_and_make_test_on_every_push_and_pr(workflows):
    doc = workflows["ci.yml"]
    on = triggers(doc)
    assert "push" in on and "pull_request" in on
    for key in ("push", "pull_request"):
        assert not (on[key] or {}).get("branches") and not (on[key] or {}).get("paths"), f"ci must run on every {key}"
    text = "\n".join(run_text(j) for j in doc["jobs"].values())
    assert re.search(r"^\s*make test\s*$", text, re.M), "ci must run `make test`"
    assert re.search(r"^\s*make lint\s*$", text, re.M), "ci must lint"
