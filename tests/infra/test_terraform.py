"""Security properties of the Terraform under infra/, asserted on the parsed HCL.

Each test names the property a careful platform review would check and fails
if the Terraform regresses on it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from fnmatch import fnmatch

import pytest
from infra_helpers import (
    ENVS,
    INFRA,
    as_list,
    attr,
    blocks,
    datas,
    locals_of,
    module_calls,
    named_blocks,
    resources,
    variable_default,
)

MODULES = sorted(p.name for p in (INFRA / "modules").iterdir() if p.is_dir())
LIVE = "infra/live"  # the one root module of every environment: <env>.tfvars + <env>.s3.tfbackend
ROOTS = [LIVE, "infra/bootstrap"]

REQUIRED_OUTPUTS = {
    "sagemaker_execution_role_arn",
    "ray_node_instance_profile_arn",
    "ray_security_group_id",
    "data_bucket",
    "mlflow_bucket",
    "ecr_repository_url",
    "mlflow_tracking_server_arn",
}

# Actions AWS does not allow to scope to a resource: the only ones that may be
# granted on Resource "*".
UNSCOPABLE_ACTIONS = (
    "ecr:GetAuthorizationToken",
    "ec2:Describe*",
    "kms:ListAliases",  # plan role: list-only, no resource type
    "kms:CreateKey",  # apply role: a key does not exist before it is created
    "secretsmanager:GetRandomPassword",  # apply role: reads no resource
)

RAY_PORTS = {6379, 8076, 8077, 10001}
RAY_WORKER_RANGE = (10002, 19999)
DASHBOARD_PORT = 8265


def _same_file(hcl, path, type_):
    return [(n, b) for p, n, b in resources(hcl, type_) if p == path]


def _policy_doc(hcl, path, ref):
    """Body of the data.aws_iam_policy_document referenced by `${data.aws_iam_policy_document.X.json}`."""
    m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", ref or "")
    assert m, f"{path}: policy {ref!r} must come from a data.aws_iam_policy_document (no inline JSON)"
    docs = {n: b for p, n, b in datas(hcl, "aws_iam_policy_document") if p == path}
    assert m.group(1) in docs, f"{path}: policy document {m.group(1)} not found"
    return docs[m.group(1)]


def _statements(doc):
    return blocks(doc, "statement")


# ------------------------------------------------------------ layout/shape


@pytest.mark.parametrize("module", MODULES)
def test_module_has_standard_shape(module):
    d = INFRA / "modules" / module
    missing = [
        f for f in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md") if not (d / f).is_file()
    ]
    assert not missing, f"module {module} lacks {missing}"


def test_every_variable_is_typed_and_described(hcl):
    bad = [
        f"{path}: variable {name}"
        for path, name, body in named_blocks(hcl, "variable")
        if not attr(body, "type") or not str(attr(body, "description", "")).strip()
    ]
    assert not bad, "variables without type or description:\n" + "\n".join(bad)


def test_every_output_is_described(hcl):
    bad = [f"{p}: output {n}" for p, n, b in named_blocks(hcl, "output") if not str(attr(b, "description", "")).strip()]
    assert not bad, "outputs without description:\n" + "\n".join(bad)


def _backend_file(env):
    text = (INFRA / "live" / f"{env}.s3.tfbackend").read_text()
    return {k: v.strip().strip('"') for k, v in re.findall(r"^(\w+)\s*=\s*(.+?)\s*$", text, re.M)}


def test_one_root_module_for_every_environment():
    assert not (INFRA / "envs").exists(), "per-environment copies of the root are gone: infra/live + <env>.tfvars"
    for f in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", ".terraform.lock.hcl"):
        assert (INFRA / "live" / f).is_file(), f"infra/live/{f} missing"
    per_env = sorted(p.name for p in (INFRA / "live").iterdir() if p.is_file() and not p.name.startswith("."))
    assert per_env == sorted(
        ["main.tf", "variables.tf", "outputs.tf", "versions.tf"]
        + [f"{e}.tfvars" for e in ENVS]
        + [f"{e}.s3.tfbackend" for e in ENVS]
    ), per_env


@pytest.mark.parametrize("env", ENVS)
def test_env_tfvars_and_outputs(hcl, env):
    outputs = {n for p, n, _ in named_blocks(hcl, "output", under=LIVE + "/")}
    assert REQUIRED_OUTPUTS <= outputs, f"{LIVE} lacks outputs {REQUIRED_OUTPUTS - outputs}"
    tfvars = hcl[f"{LIVE}/{env}.tfvars"]
    assert attr(tfvars, "environment") == env
    assert attr(tfvars, "cost_center"), "each environment sets its own cost_center"


@pytest.mark.parametrize("env", ENVS)
def test_env_region_defaults_to_eu_west_1(hcl, env):
    assert variable_default(hcl, LIVE, "aws_region") == "eu-west-1"
    assert attr(hcl[f"{LIVE}/{env}.tfvars"], "aws_region", "eu-west-1") == "eu-west-1"


@pytest.mark.parametrize("env", ENVS)
def test_env_remote_state_is_encrypted_and_locked(hcl, env):
    tf = blocks(hcl[f"{LIVE}/versions.tf"], "terraform")
    backends = [b for t in tf for b in blocks(t, "backend")]
    assert len(backends) == 1 and "s3" in backends[0], "state must live in the S3 backend"
    s3 = _backend_file(env)
    assert s3.get("encrypt") == "true"
    # S3-native locking (lock file) or a DynamoDB lock table.
    assert s3.get("use_lockfile") == "true" or s3.get("dynamodb_table"), "state locking disabled"
    assert s3.get("key") == f"kon_ray/{env}/terraform.tfstate", "each environment needs its own state key"
    assert s3.get("region") == "eu-west-1"


@pytest.mark.parametrize("root", ROOTS)
def test_root_tags_every_resource_for_cost_tracking(hcl, root):
    providers = [
        body
        for entry in hcl[f"{root}/main.tf"].get("provider", [])
        for name, body in entry.items()
        if name == "aws"
    ]
    assert providers, f"{root}: no aws provider"
    for body in providers:
        default_tags = blocks(body, "default_tags")
        assert default_tags, f"{root}: provider has no default_tags"
        tags = str(attr(default_tags[0], "tags"))
        for key in ("Project", "Environment", "CostCenter", "ManagedBy"):
            assert re.search(rf"\b{key}\b", tags), f"{root}: default tag {key} missing"


def test_env_root_uses_the_shared_stack_and_uploads_package_and_conf(hcl):
    calls = module_calls(hcl, LIVE + "/")
    assert len(calls) == 1, "expected one module call"
    _, _, body = calls[0]
    assert attr(body, "source") == "../modules/kon_ray_stack"
    assert attr(body, "force_destroy") is False, "buckets must not be force-destroyable"
    dirs = attr(body, "code_source_dirs")
    assert set(dirs) == {"kon_ray", "conf"}
    assert dirs["kon_ray"].endswith("/../../kon_ray") and dirs["conf"].endswith("/../../conf")


# ------------------------------------------------------------------ S3


def test_every_bucket_is_versioned_encrypted_private_and_tls_only(hcl):
    buckets = resources(hcl, "aws_s3_bucket")
    assert len(buckets) >= 2, "expected the secure_bucket and access_logs_bucket modules"
    for path, name, _ in buckets:
        ref = f"${{aws_s3_bucket.{name}.id}}"
        where = f"{path}: aws_s3_bucket.{name}"

        versioning = [b for _, b in _same_file(hcl, path, "aws_s3_bucket_versioning") if attr(b, "bucket") == ref]
        assert versioning, f"{where} not versioned"
        status = attr(blocks(versioning[0], "versioning_configuration")[0], "status")
        assert status == "Enabled", f"{where} versioning not Enabled"

        sse = [
            b
            for _, b in _same_file(hcl, path, "aws_s3_bucket_server_side_encryption_configuration")
            if attr(b, "bucket") == ref
        ]
        assert sse, f"{where} has no default encryption"
        default = blocks(blocks(sse[0], "rule")[0], "apply_server_side_encryption_by_default")[0]
        algo = attr(default, "sse_algorithm")
        assert algo in ("aws:kms", "aws:kms:dsse", "AES256"), f"{where}: unexpected SSE {algo}"
        if algo != "AES256":
            assert attr(default, "kms_master_key_id"), f"{where}: SSE-KMS without a customer-managed key"

        pab = [b for _, b in _same_file(hcl, path, "aws_s3_bucket_public_access_block") if attr(b, "bucket") == ref]
        assert pab, f"{where}: no public access block"
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            assert attr(pab[0], flag) is True, f"{where}: {flag} is not true"

        policies = [b for _, b in _same_file(hcl, path, "aws_s3_bucket_policy") if attr(b, "bucket") == ref]
        assert policies, f"{where}: no bucket policy"
        doc = _policy_doc(hcl, path, attr(policies[0], "policy"))
        arn = f"${{aws_s3_bucket.{name}.arn}}"
        tls = [
            s
            for s in _statements(doc)
            if attr(s, "effect") == "Deny"
            and "s3:*" in as_list(attr(s, "actions"))
            and any(
                attr(c, "test") == "Bool"
                and attr(c, "variable") == "aws:SecureTransport"
                and as_list(attr(c, "values")) == ["false"]
                for c in blocks(s, "condition")
            )
            and any(
                attr(p, "type") == "*" and as_list(attr(p, "identifiers")) == ["*"] for p in blocks(s, "principals")
            )
        ]
        assert tls, f"{where}: policy does not deny non-TLS requests"
        covered = as_list(attr(tls[0], "resources"))
        assert arn in covered and f"{arn}/*" in covered, (
            f"{where}: TLS-only statement must cover the bucket and its objects"
        )


def test_data_mlflow_and_state_buckets_use_the_kms_secure_bucket_module(hcl):
    calls = {name: body for _, name, body in module_calls(hcl, "infra/modules/kon_ray_stack/")}
    calls.update({f"bootstrap.{n}": b for _, n, b in module_calls(hcl, "infra/bootstrap/")})
    for name in ("data_bucket", "mlflow_bucket", "bootstrap.state_bucket"):
        assert attr(calls[name], "source").endswith("secure_bucket"), f"{name} must use modules/secure_bucket"
        assert "module.kms.key_arn" in attr(calls[name], "kms_key_arn"), (
            f"{name} must be encrypted with the project KMS key"
        )


def test_code_upload_is_kms_encrypted_and_change_tracked(hcl):
    objs = resources(hcl, "aws_s3_object")
    assert objs, "the package/conf upload is missing"
    for path, name, body in objs:
        assert "fileset(" in str(locals_of(hcl, path)), f"{path}: upload should enumerate files with fileset()"
        assert attr(body, "kms_key_id"), f"{path}: aws_s3_object.{name} not KMS encrypted"
        assert attr(body, "server_side_encryption") == "aws:kms"
        # With SSE-KMS the S3 ETag is not an MD5: etag would never converge.
        assert "etag" not in body, f"{path}: use source_hash, not etag, with SSE-KMS"
        assert attr(body, "source_hash", "").startswith("${filemd5("), (
            f"{path}: re-upload on change needs source_hash = filemd5(...)"
        )


def test_kms_keys_rotate(hcl):
    keys = resources(hcl, "aws_kms_key")
    assert keys
    for path, name, body in keys:
        assert attr(body, "enable_key_rotation") is True, f"{path}: aws_kms_key.{name} rotation off"
        assert attr(body, "policy"), f"{path}: aws_kms_key.{name} has no explicit key policy"


# ------------------------------------------------------------------ ECR


def test_ecr_is_immutable_scanned_encrypted_and_keeps_last_10(hcl):
    repos = resources(hcl, "aws_ecr_repository")
    assert repos
    for path, name, body in repos:
        where = f"{path}: aws_ecr_repository.{name}"
        assert attr(body, "image_tag_mutability") == "IMMUTABLE", f"{where} tags are mutable"
        assert attr(blocks(body, "image_scanning_configuration")[0], "scan_on_push") is True, f"{where} no scan on push"
        encryption = attr(blocks(body, "encryption_configuration")[0], "encryption_type")
        assert encryption == "KMS", f"{where} not KMS encrypted"

        lifecycle = [
            b
            for _, b in _same_file(hcl, path, "aws_ecr_lifecycle_policy")
            if attr(b, "repository") == f"${{aws_ecr_repository.{name}.name}}"
        ]
        assert lifecycle, f"{where} has no lifecycle policy"
        m = re.fullmatch(r"\$\{data\.aws_ecr_lifecycle_policy_document\.(\w+)\.json\}", attr(lifecycle[0], "policy"))
        assert m, f"{where}: lifecycle policy must come from aws_ecr_lifecycle_policy_document"
        docs = {n: b for p, n, b in datas(hcl, "aws_ecr_lifecycle_policy_document") if p == path}
        rules = blocks(docs[m.group(1)], "rule")
        keep = [
            attr(sel, "count_number")
            for r in rules
            for sel in blocks(r, "selection")
            if attr(sel, "count_type") == "imageCountMoreThan" and attr(sel, "tag_status") == "any"
        ]
        assert keep == [10], f"{where}: lifecycle must keep exactly the last 10 images, got {keep}"
        assert all(attr(a, "type") == "expire" for r in rules for a in blocks(r, "action"))


# ------------------------------------------------------------------ IAM


def _all_statements(hcl):
    for path, name, doc in datas(hcl, "aws_iam_policy_document"):
        for st in _statements(doc):
            yield path, name, st


def test_no_iam_statement_allows_star_action_on_star_resource(hcl):
    offenders = []
    for path, name, st in _all_statements(hcl):
        actions = as_list(attr(st, "actions")) + as_list(attr(st, "not_actions"))
        res = as_list(attr(st, "resources")) + as_list(attr(st, "not_resources"))
        if "*" in actions and ("*" in res or not res):
            offenders.append(f"{path}: {name}/{attr(st, 'sid')}")
        if attr(st, "not_actions") and attr(st, "effect", "Allow") == "Allow":
            offenders.append(f"{path}: {name}/{attr(st, 'sid')} uses NotAction in an Allow")
    assert not offenders, "Action * on Resource *:\n" + "\n".join(offenders)


def test_allow_on_star_resource_only_for_unscopable_actions(hcl):
    offenders = []
    for path, name, st in _all_statements(hcl):
        if attr(st, "effect", "Allow") != "Allow" or "*" not in as_list(attr(st, "resources")):
            continue
        if path == "infra/modules/kms_key/main.tf" and name == "key":
            if attr(st, "sid") == "CloudWatchLogsOfThisAccount":
                # CloudWatch Logs of this region, only for this account's log groups.
                conds = {attr(c, "variable"): as_list(attr(c, "values")) for c in blocks(st, "condition")}
                assert conds.get("kms:EncryptionContext:aws:logs:arn"), (
                    "logs key grant needs the encryption-context guard"
                )
                continue
            # A KMS key policy's Resource "*" means "this key"; root delegation only.
            principals = [as_list(attr(p, "identifiers")) for p in blocks(st, "principals")]
            assert all(i.endswith(":root}") or i.endswith(":root") for ids in principals for i in ids), (
                "key policy must only delegate to the account"
            )
            continue
        bad = [a for a in as_list(attr(st, "actions")) if not any(fnmatch(a, pat) for pat in UNSCOPABLE_ACTIONS)]
        if bad:
            offenders.append(f"{path}: {name}/{attr(st, 'sid')}: {bad}")
    assert not offenders, 'scopable actions granted on Resource "*":\n' + "\n".join(offenders)


def test_no_wildcard_service_actions_in_role_policies(hcl):
    offenders = [
        f"{path}: {name}/{attr(st, 'sid')}: {a}"
        for path, name, st in _all_statements(hcl)
        if path.startswith("infra/modules/iam/")
        for a in as_list(attr(st, "actions"))
        if a.endswith(":*") or a == "*"
    ]
    assert not offenders, "role policies must list actions explicitly:\n" + "\n".join(offenders)


def test_role_policies_come_from_checked_documents_and_no_admin_managed_policies(hcl):
    for type_ in ("aws_iam_role_policy", "aws_iam_policy"):
        for path, _name, body in resources(hcl, type_):
            _policy_doc(hcl, path, attr(body, "policy"))
    for path, name, body in resources(hcl, "aws_iam_role_policy_attachment"):
        arn = str(attr(body, "policy_arn"))
        assert not re.search(r"AdministratorAccess|FullAccess|PowerUser", arn), f"{path}: {name} attaches {arn}"
    for path, name, body in resources(hcl, "aws_iam_role"):
        assert not attr(body, "managed_policy_arns"), f"{path}: {name} attaches managed policies"


def test_iam_data_access_is_scoped_to_project_resources(hcl):
    docs = {n: b for p, n, b in datas(hcl, "aws_iam_policy_document", under="infra/modules/iam/")}
    wl = {attr(s, "sid"): s for s in _statements(docs["workload"])}
    assert as_list(attr(wl["ListProjectBuckets"], "resources")) == ["${local.bucket_arns}"] or set(
        as_list(attr(wl["ListProjectBuckets"], "resources"))
    ) <= {"${var.data_bucket_arn}", "${var.mlflow_bucket_arn}"}
    assert attr(wl["ReadWriteProjectObjects"], "resources") in (["${local.object_arns}"], "${local.object_arns}")
    assert as_list(attr(wl["UseProjectKmsKey"], "resources")) == ["${var.kms_key_arn}"]
    assert as_list(attr(wl["PullProjectImage"], "resources")) == ["${var.ecr_repository_arn}"]
    assert as_list(attr(wl["UseProjectTrackingServer"], "resources")) == ["${var.mlflow_tracking_server_arn}"]
    loc = locals_of(hcl, "infra/modules/iam/main.tf")
    assert loc["bucket_arns"] == ["${var.data_bucket_arn}", "${var.mlflow_bucket_arn}"]


def test_sagemaker_execution_role_trusted_by_sagemaker_only(hcl):
    roles = {n: b for p, n, b in resources(hcl, "aws_iam_role", under="infra/modules/iam/")}
    trust = _policy_doc(hcl, "infra/modules/iam/main.tf", attr(roles["sagemaker_execution"], "assume_role_policy"))
    services = set()
    for st in _statements(trust):
        assert attr(st, "effect") == "Allow" and as_list(attr(st, "actions")) == ["sts:AssumeRole"]
        for p in blocks(st, "principals"):
            assert attr(p, "type") == "Service", "the execution role must only trust AWS services"
            services.update(as_list(attr(p, "identifiers")))
        assert any(attr(c, "variable") == "aws:SourceAccount" for c in blocks(st, "condition")), (
            "confused-deputy guard missing"
        )
    assert services == {"sagemaker.amazonaws.com"}, "EventBridge no longer assumes it: the scheduler has its own role"


def test_no_pipeline_grant_left(hcl):
    granted = [
        f"{path}: {name}/{attr(st, 'sid')}"
        for path, name, st in _all_statements(hcl)
        if any("Pipeline" in a for a in as_list(attr(st, "actions")))
    ]
    assert not granted, "nothing starts SageMaker Pipelines any more:\n" + "\n".join(granted)


def test_ray_roles_and_instance_profiles(hcl):
    roles = {n: b for p, n, b in resources(hcl, "aws_iam_role", under="infra/modules/iam/")}
    profiles = {n: b for p, n, b in resources(hcl, "aws_iam_instance_profile", under="infra/modules/iam/")}
    for role in ("ray_node", "ray_head"):
        trust = _policy_doc(hcl, "infra/modules/iam/main.tf", attr(roles[role], "assume_role_policy"))
        ids = {
            i for st in _statements(trust) for p in blocks(st, "principals") for i in as_list(attr(p, "identifiers"))
        }
        assert ids == {"ec2.amazonaws.com"}
        assert attr(profiles[role], "role") == f"${{aws_iam_role.{role}.name}}"


def test_autoscaler_permissions_are_confined_to_the_cluster(hcl):
    docs = {n: b for p, n, b in datas(hcl, "aws_iam_policy_document", under="infra/modules/iam/")}
    for st in _statements(docs["ray_autoscaler"]):
        actions = as_list(attr(st, "actions"))
        conds = {attr(c, "variable"): as_list(attr(c, "values")) for c in blocks(st, "condition")}
        if set(actions) & {"ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances"}:
            assert conds.get("aws:ResourceTag/ray-cluster-name") == ["${var.ray_cluster_name}"], attr(st, "sid")
        if "iam:PassRole" in actions:
            assert as_list(attr(st, "resources")) == ["${aws_iam_role.ray_node.arn}"]
            assert conds.get("iam:PassedToService") == ["ec2.amazonaws.com"]
        if "ec2:RunInstances" in actions and any(":instance/" in r for r in as_list(attr(st, "resources"))):
            assert conds.get("aws:RequestTag/ray-cluster-name") == ["${var.ray_cluster_name}"]


# ------------------------------------------------------------ networking


def _ray_rules(hcl):
    path = "infra/modules/ray_network/main.tf"
    loc = locals_of(hcl, path)
    ports = loc["ray_intra_cluster_ports"]
    rules = []
    for _p, name, body in resources(hcl, "aws_vpc_security_group_ingress_rule", under="infra/modules/ray_network/"):
        if attr(body, "security_group_id") != "${aws_security_group.ray.id}":
            continue
        if attr(body, "for_each") == "${local.ray_intra_cluster_ports}":
            for key, spec in ports.items():
                rules.append((f"{name}[{key}]", spec["from"], spec["to"], body))
        else:
            lo, hi = attr(body, "from_port"), attr(body, "to_port")
            lo = loc.get("dashboard_port") if lo == "${local.dashboard_port}" else lo
            hi = loc.get("dashboard_port") if hi == "${local.dashboard_port}" else hi
            rules.append((name, int(lo), int(hi), body))
    return rules


def _is_self_only(body):
    return (
        attr(body, "referenced_security_group_id") == "${aws_security_group.ray.id}"
        and not any(k in body for k in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id"))
    )


def test_ray_ports_open_only_to_the_security_group_itself(hcl):
    rules = _ray_rules(hcl)
    assert rules, "no ingress rule on the Ray security group"
    for name, lo, hi, body in rules:
        touches_ray = any(lo <= p <= hi for p in RAY_PORTS) or not (
            hi < RAY_WORKER_RANGE[0] or lo > RAY_WORKER_RANGE[1]
        )
        if touches_ray:
            assert _is_self_only(body), f"{name} ({lo}-{hi}) opens a Ray port to something else than the Ray group"
    for port in RAY_PORTS:
        assert any(lo <= port <= hi and _is_self_only(b) for _, lo, hi, b in rules), (
            f"Ray port {port} not opened to the group"
        )
    lo_w, hi_w = RAY_WORKER_RANGE
    assert any(lo <= lo_w and hi >= hi_w and _is_self_only(b) for _, lo, hi, b in rules), (
        "Ray worker port range not opened"
    )


def test_dashboard_closed_by_default_and_only_from_the_configured_cidr_variable(hcl):
    """8265 is closed unless dashboard_ingress_enabled (clients tunnel over SSH: cluster.port_forward=true), and
    then open only to dashboard_ingress_cidrs."""
    rules = [(n, lo, hi, b) for n, lo, hi, b in _ray_rules(hcl) if lo <= DASHBOARD_PORT <= hi]
    assert len(rules) == 1, f"exactly one rule may open {DASHBOARD_PORT}: {[r[0] for r in rules]}"
    name, lo, hi, body = rules[0]
    assert (lo, hi) == (DASHBOARD_PORT, DASHBOARD_PORT), "the dashboard rule must open 8265 only"
    assert attr(body, "for_each") == "${var.dashboard_ingress_enabled ? toset(var.dashboard_ingress_cidrs) : toset([])}"
    assert attr(body, "cidr_ipv4") == "${each.value}"
    assert "referenced_security_group_id" not in body and "cidr_ipv6" not in body
    for directory in ("infra/modules/ray_network", "infra/modules/kon_ray_stack", LIVE):
        assert variable_default(hcl, directory, "dashboard_ingress_enabled") is False, (
            f"{directory}: 8265 must default closed"
        )
    calls = {n: b for _, n, b in module_calls(hcl, "infra/modules/kon_ray_stack/")}
    assert attr(calls["network"], "dashboard_ingress_enabled") == "${var.dashboard_ingress_enabled}"
    live = {n: b for _, n, b in module_calls(hcl, LIVE + "/")}
    assert attr(live["kon_ray"], "dashboard_ingress_enabled") == "${var.dashboard_ingress_enabled}"


def test_only_ssh_reaches_the_ray_group_from_outside_by_default(hcl):
    """Rules with a CIDR source on the Ray group: SSH (22) from ssh_ingress_cidrs, and the opt-in dashboard rule."""
    external = {name: (lo, hi) for name, lo, hi, body in _ray_rules(hcl) if "cidr_ipv4" in body}
    assert external == {"ssh": (22, 22), "ray_dashboard": (DASHBOARD_PORT, DASHBOARD_PORT)}, external
    rules = {name: body for name, _, _, body in _ray_rules(hcl)}
    assert attr(rules["ssh"], "for_each") == "${toset(var.ssh_ingress_cidrs)}"


def test_dashboard_and_ssh_cidrs_reject_the_world(hcl):
    variables = {n: b for p, n, b in named_blocks(hcl, "variable", under="infra/modules/ray_network/")}
    for var in ("dashboard_ingress_cidrs", "ssh_ingress_cidrs"):
        conds = " ".join(str(attr(v, "condition")) for v in blocks(variables[var], "validation"))
        conds = conds.replace(" ", "").replace("\\", "")
        # RFC 1918 blocks only, prefix /16 or longer (terraform test checks that ["0.0.0.0/1","128.0.0.0/1"] fails).
        assert "192.168." in conds and "172.(1[6-9]|2[0-9]|3[01])." in conds and "^(10." in conds, (
            f"{var}: RFC 1918 check missing"
        )
        assert ">=16" in conds, f"{var}: prefix length check missing"
    rfc1918 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    for env in ENVS:
        tfvars = hcl[f"{LIVE}/{env}.tfvars"]
        for var in ("dashboard_ingress_cidrs", "ssh_ingress_cidrs"):
            for cidr in as_list(attr(tfvars, var, [])):
                net = ipaddress.ip_network(cidr)
                assert any(net.subnet_of(b) for b in rfc1918) and net.prefixlen >= 16, (
                    f"{env}: {var} {cidr} is not a private /16+ range"
                )


def test_no_ingress_from_the_internet_anywhere(hcl):
    for type_ in ("aws_vpc_security_group_ingress_rule", "aws_security_group_rule"):
        for path, name, body in resources(hcl, type_):
            if type_ == "aws_security_group_rule" and attr(body, "type") != "ingress":
                continue
            cidrs = (
                as_list(attr(body, "cidr_ipv4")) + as_list(attr(body, "cidr_blocks")) + as_list(attr(body, "cidr_ipv6"))
            )
            assert not {"0.0.0.0/0", "::/0"} & set(map(str, cidrs)), f"{path}: {name} open to the internet"
    for path, name, body in resources(hcl, "aws_security_group"):
        assert not blocks(body, "ingress"), f"{path}: {name} uses inline ingress rules (not reviewable per port)"


# ------------------------------------------------------------ SageMaker


def test_code_editor_space_size(hcl):
    spaces = resources(hcl, "aws_sagemaker_space")
    assert len(spaces) == 1
    path, _, body = spaces[0]
    settings = blocks(body, "space_settings")[0]
    assert attr(settings, "app_type") == "CodeEditor"
    resource_spec = blocks(blocks(settings, "code_editor_app_settings")[0], "default_resource_spec")[0]
    instance_expr = attr(resource_spec, "instance_type")
    ebs_settings = blocks(blocks(settings, "space_storage_settings")[0], "ebs_storage_settings")[0]
    ebs_expr = attr(ebs_settings, "ebs_volume_size_in_gb")
    module_dir = os.path.dirname(path)
    assert instance_expr == "${var.instance_type}"
    assert variable_default(hcl, module_dir, "instance_type") == "ml.t3.medium"
    assert ebs_expr == "${var.ebs_volume_size_in_gb}"
    assert variable_default(hcl, module_dir, "ebs_volume_size_in_gb") == 30
    # ... and nothing up the chain overrides them.
    assert variable_default(hcl, "infra/modules/kon_ray_stack", "code_editor_instance_type") == "ml.t3.medium"
    assert variable_default(hcl, "infra/modules/kon_ray_stack", "code_editor_ebs_size_gb") == 30
    assert variable_default(hcl, LIVE, "code_editor_instance_type") == "ml.t3.medium"
    assert variable_default(hcl, LIVE, "code_editor_ebs_size_gb") == 30
    for env in ENVS:
        tfvars = hcl[f"{LIVE}/{env}.tfvars"]
        assert attr(tfvars, "code_editor_instance_type", "ml.t3.medium") == "ml.t3.medium"
        assert attr(tfvars, "code_editor_ebs_size_gb", 30) == 30


def test_sagemaker_domain_is_private_and_encrypted(hcl):
    domains = resources(hcl, "aws_sagemaker_domain")
    assert len(domains) == 1
    _, _, body = domains[0]
    assert attr(body, "app_network_access_type") == "VpcOnly"
    assert attr(body, "kms_key_id"), "domain storage must be encrypted with the project key"
    assert attr(body, "auth_mode") == "IAM"


def test_mlflow_tracking_server_registers_models_and_uses_project_bucket(hcl):
    servers = resources(hcl, "aws_sagemaker_mlflow_tracking_server")
    assert len(servers) == 1
    _, _, body = servers[0]
    assert attr(body, "automatic_model_registration") is True
    calls = {n: b for _, n, b in module_calls(hcl, "infra/modules/kon_ray_stack/")}
    assert "module.mlflow_bucket.bucket_name" in attr(calls["mlflow"], "artifact_store_uri")
    assert attr(calls["mlflow"], "role_arn") == "${module.iam.mlflow_server_role_arn}"
