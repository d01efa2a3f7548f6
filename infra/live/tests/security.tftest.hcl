# Security properties of the Terraform, asserted on plans made with a mocked
# AWS provider (no credentials, no network): `terraform test` in infra/live.
# tests/infra/test_terraform_offline.py runs it after an init against a local
# filesystem mirror of hashicorp/aws.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012", arn = "arn:aws:iam::123456789012:root", user_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com", reverse_dns_prefix = "com.amazonaws" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1", id = "eu-west-1", endpoint = "ec2.eu-west-1.amazonaws.com", description = "Europe (Ireland)" }
  }
  mock_data "aws_vpc" {
    defaults = { id = "vpc-0123456789abcdef0", arn = "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0123456789abcdef0", cidr_block = "10.10.0.0/16" }
  }
  mock_data "aws_subnets" {
    defaults = { ids = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"] }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_ecr_lifecycle_policy_document" {
    defaults = { json = "{\"rules\":[]}" }
  }
  mock_resource "aws_kms_key" {
    override_during = plan
    defaults        = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000", key_id = "00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_iam_role" {
    override_during = plan
    defaults        = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_ecr_repository" {
    override_during = plan
    defaults        = { arn = "arn:aws:ecr:eu-west-1:123456789012:repository/kon-ray-dev", repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray-dev" }
  }
  mock_resource "aws_s3_bucket" {
    override_during = plan
    defaults        = { arn = "arn:aws:s3:::kon-ray-dev-mock-123456789012" }
  }
  mock_resource "aws_secretsmanager_secret" {
    override_during = plan
    defaults        = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kon-ray-dev-ray-token-AbCdEf" }
  }
  mock_resource "aws_security_group" {
    override_during = plan
    defaults        = { arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0123456789abcdef0", id = "sg-0123456789abcdef0" }
  }
}

variables {
  environment             = "dev"
  cost_center             = "ml-platform-dev"
  owner                   = "ml-platform"
  vpc_name                = "kon-ray-dev"
  dashboard_ingress_cidrs = ["10.10.0.0/16"]
  ssh_ingress_cidrs       = ["10.10.250.0/24"]
  ray_cluster_name        = "kon-ray-dev"
  github_owner            = "example-org"
  github_repository       = "kon_ray"
  state_bucket_name       = "kon-ray-tfstate-123456789012"
  state_kms_key_arn       = "arn:aws:kms:eu-west-1:123456789012:key/11111111-1111-1111-1111-111111111111"
  pipeline_image_uri      = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray-dev@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  scheduled_datasets      = { POLA = { input_prefix = "datasets/POLA/" } }
}

# The whole environment plans with the dev values; the schedules exist.
run "environment_plans" {
  command = plan

  assert {
    condition     = output.schedule_group_name == "kon-ray-dev"
    error_message = "the schedule group is named after the environment"
  }
}

# ------------------------------------------------------------- CI identities
run "ci_trust_pins_audience_and_environment_subject" {
  command = plan

  module {
    source = "../modules/ci_identities"
  }

  variables {
    name_prefix        = "kon-ray-prod"
    environment        = "prod"
    github_owner       = "example-org"
    github_repository  = "kon_ray"
    state_bucket_arn   = "arn:aws:s3:::kon-ray-tfstate-123456789012"
    state_key_prefix   = "kon_ray/prod/"
    state_kms_key_arn  = "arn:aws:kms:eu-west-1:123456789012:key/11111111-1111-1111-1111-111111111111"
    ecr_repository_arn = "arn:aws:ecr:eu-west-1:123456789012:repository/kon-ray-prod"
  }

  assert {
    condition = alltrue([for role, doc in data.aws_iam_policy_document.trust : alltrue([
      for s in doc.statement : s.effect == "Allow" && s.actions == toset(["sts:AssumeRoleWithWebIdentity"])
      && length([for c in s.condition : c if c.test == "StringEquals" && c.variable == "token.actions.githubusercontent.com:aud" && c.values == tolist(["sts.amazonaws.com"])]) == 1
      && length([for c in s.condition : c if c.variable == "token.actions.githubusercontent.com:sub"]) == 1
      && length([for c in s.condition : c if c.test == "StringEquals" && c.variable == "token.actions.githubusercontent.com:sub" && length(c.values) == 1 && !strcontains(join("", c.values), "*")]) == 1
    ])])
    error_message = "every CI trust statement pins aud = sts.amazonaws.com and exactly one sub (StringEquals, no wildcard)"
  }

  assert {
    condition = (
      local.subjects.apply == "repo:example-org/kon_ray:environment:prod"
      && local.subjects.image == "repo:example-org/kon_ray:environment:prod"
      && local.subjects.plan == "repo:example-org/kon_ray:environment:prod-plan"
    )
    error_message = "apply/image trust environment prod, plan trusts environment prod-plan"
  }

  assert {
    condition = alltrue([for role, doc in data.aws_iam_policy_document.trust : contains(
      flatten([for s in doc.statement : [for c in s.condition : c.values if c.variable == "token.actions.githubusercontent.com:sub"]]),
      local.subjects[role]
    )])
    error_message = "each role trusts its own subject"
  }

  assert {
    condition = alltrue(flatten([for s in data.aws_iam_policy_document.plan.statement : [
      for a in s.actions : can(regex("^(s3:Get|s3:List|iam:Get|iam:List|kms:Describe|kms:Get|kms:List|kms:Decrypt$|ecr:Describe|ecr:Get|ecr:List|sagemaker:Describe|sagemaker:List|logs:Describe|logs:List|secretsmanager:DescribeSecret$|secretsmanager:GetResourcePolicy$|scheduler:Get|scheduler:List|ec2:Describe)", a))
    ]]))
    error_message = "the plan role's policy only reads (and never reads a secret value)"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.image.statement :
      s.actions == toset(["ecr:GetAuthorizationToken"]) || s.resources == toset(["arn:aws:ecr:eu-west-1:123456789012:repository/kon-ray-prod"])
    ])
    error_message = "the image role may only push to the environment's repository"
  }
}

# ------------------------------------------------------------------ network
run "dashboard_and_ssh_never_open_to_the_internet" {
  command = plan

  module {
    source = "../modules/ray_network"
  }

  variables {
    name_prefix             = "kon-ray-dev"
    vpc_id                  = "vpc-0123456789abcdef0"
    dashboard_ingress_cidrs = ["10.10.0.0/16", "172.16.4.0/24", "192.168.1.0/28"]
    ssh_ingress_cidrs       = ["10.10.250.0/24"]
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.ray_dashboard) == 0
    error_message = "8265 is closed by default (clients tunnel over SSH: cluster.port_forward=true)"
  }

  assert {
    condition = alltrue([for r in concat(values(aws_vpc_security_group_ingress_rule.ray_intra_cluster), [aws_vpc_security_group_ingress_rule.ssh_from_cluster]) :
    r.cidr_ipv4 == null && r.cidr_ipv6 == null && r.referenced_security_group_id == aws_security_group.ray.id])
    error_message = "Ray's own ports are open to members of the Ray security group only"
  }

  assert {
    condition     = alltrue([for r in aws_vpc_security_group_ingress_rule.ssh : r.cidr_ipv4 == "10.10.250.0/24"])
    error_message = "SSH only from the configured private range"
  }
}

run "dashboard_opens_to_the_configured_cidrs_only_when_enabled" {
  command = plan

  module {
    source = "../modules/ray_network"
  }

  variables {
    name_prefix               = "kon-ray-dev"
    vpc_id                    = "vpc-0123456789abcdef0"
    dashboard_ingress_enabled = true
    dashboard_ingress_cidrs   = ["10.10.0.0/16", "172.16.4.0/24", "192.168.1.0/28"]
  }

  assert {
    condition = (toset([for r in aws_vpc_security_group_ingress_rule.ray_dashboard : r.cidr_ipv4]) == toset(var.dashboard_ingress_cidrs)
    && alltrue([for r in aws_vpc_security_group_ingress_rule.ray_dashboard : r.from_port == 8265 && r.to_port == 8265]))
    error_message = "enabled, 8265 opens to dashboard_ingress_cidrs only, and only 8265"
  }
}

run "rejects_an_enabled_dashboard_without_cidrs" {
  command = plan

  module {
    source = "../modules/ray_network"
  }

  variables {
    name_prefix               = "kon-ray-dev"
    vpc_id                    = "vpc-0123456789abcdef0"
    dashboard_ingress_enabled = true
    dashboard_ingress_cidrs   = []
  }

  expect_failures = [var.dashboard_ingress_enabled]
}

run "rejects_split_world_cidrs" {
  command = plan

  module {
    source = "../modules/ray_network"
  }

  variables {
    name_prefix             = "kon-ray-dev"
    vpc_id                  = "vpc-0123456789abcdef0"
    dashboard_ingress_cidrs = ["0.0.0.0/1", "128.0.0.0/1"]
    ssh_ingress_cidrs       = ["10.0.0.0/8"]
  }

  expect_failures = [var.dashboard_ingress_cidrs, var.ssh_ingress_cidrs]
}

run "rejects_public_ranges" {
  command = plan

  module {
    source = "../modules/ray_network"
  }

  variables {
    name_prefix             = "kon-ray-dev"
    vpc_id                  = "vpc-0123456789abcdef0"
    dashboard_ingress_cidrs = ["8.8.8.0/24"]
    ssh_ingress_cidrs       = ["172.32.0.0/16"]
  }

  expect_failures = [var.dashboard_ingress_cidrs, var.ssh_ingress_cidrs]
}

# --------------------------------------------------------------- encryption
run "buckets_encrypted_with_the_project_key_and_private" {
  command = plan

  module {
    source = "../modules/secure_bucket"
  }

  variables {
    bucket_name            = "kon-ray-dev-data-123456789012"
    kms_key_arn            = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    access_log_bucket_name = "kon-ray-dev-access-logs-123456789012"
  }

  assert {
    condition = alltrue([for r in aws_s3_bucket_server_side_encryption_configuration.this.rule : alltrue([
      for d in r.apply_server_side_encryption_by_default : d.sse_algorithm == "aws:kms" && d.kms_master_key_id == var.kms_key_arn
    ])])
    error_message = "default encryption is SSE-KMS with the project key"
  }

  assert {
    condition     = aws_s3_bucket_public_access_block.this.block_public_policy && aws_s3_bucket_public_access_block.this.restrict_public_buckets && aws_s3_bucket_public_access_block.this.block_public_acls && aws_s3_bucket_public_access_block.this.ignore_public_acls
    error_message = "public access is blocked"
  }
}

# kon_ray/storage.py stages S3 outputs under _kon_staging/; what a killed run leaves there must expire.
run "abandoned_staging_objects_expire" {
  command = plan

  module {
    source = "../modules/secure_bucket"
  }

  variables {
    bucket_name            = "kon-ray-dev-data-123456789012"
    kms_key_arn            = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    access_log_bucket_name = "kon-ray-dev-access-logs-123456789012"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this.rule[1].id == "expire-abandoned-staging" && aws_s3_bucket_lifecycle_configuration.this.rule[1].status == "Enabled"
    error_message = "the second lifecycle rule is the enabled staging rule"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this.rule[1].filter[0].prefix == "_kon_staging/"
    error_message = "the staging rule covers the _kon_staging/ prefix (kon_ray/storage.py S3_STAGING_PREFIX)"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this.rule[1].expiration[0].days == 3
    error_message = "staged objects expire after 3 days"
  }
}

run "ray_token_secret_is_kms_encrypted_and_readable_only_by_nodes_and_submitters" {
  command = plan

  module {
    source = "../modules/ray_token_secret"
  }

  variables {
    name                     = "kon-ray-dev-ray-token"
    kms_key_arn              = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    node_role_names          = { node = "kon-ray-dev-ray-node", head = "kon-ray-dev-ray-head", sagemaker = "kon-ray-dev-sagemaker-execution" }
    node_role_arns           = ["arn:aws:iam::123456789012:role/kon-ray-dev-ray-node", "arn:aws:iam::123456789012:role/kon-ray-dev-ray-head", "arn:aws:iam::123456789012:role/kon-ray-dev-sagemaker-execution"]
    submitter_principal_arns = ["arn:aws:iam::123456789012:role/ml-operators"]
  }

  assert {
    condition     = aws_secretsmanager_secret.this.kms_key_id == var.kms_key_arn
    error_message = "the Ray token is encrypted with the project key"
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.access.statement :
      s.effect == "Deny" && contains(tolist(s.actions), "secretsmanager:GetSecretValue")
      && anytrue([for c in s.condition : c.test == "ArnNotEquals" && c.variable == "aws:PrincipalArn"
    && toset(c.values) == toset(concat(var.node_role_arns, var.submitter_principal_arns))])])
    error_message = "the secret's policy denies GetSecretValue to every principal but the Ray nodes and the submitters"
  }

  assert {
    condition     = toset(keys(aws_iam_role_policy.read)) == toset(["node", "head", "sagemaker"])
    error_message = "every Ray node role (EC2 workers, EC2 head, SageMaker) gets the read policy"
  }
}

# ---------------------------------------------------------------- schedules
run "schedules_start_the_sagemaker_ray_job_and_the_drift_check" {
  command = plan

  module {
    source = "../modules/scheduled_runs"
  }

  variables {
    name_prefix        = "kon-ray-dev"
    image_uri          = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray-dev@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    execution_role_arn = "arn:aws:iam::123456789012:role/kon-ray-dev-sagemaker-execution"
    data_bucket        = "kon-ray-dev-data-123456789012"
    kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    datasets           = { POLA = { input_prefix = "datasets/POLA/", overrides = ["train.rounds=50"] } }
    tracking_uri       = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/kon-ray-dev"
  }

  assert {
    condition = (
      contains(jsondecode(jsondecode(aws_scheduler_schedule.pipeline["POLA"].target[0].input).HyperParameters.kon_overrides), "tracking.uri='${var.tracking_uri}'")
      && contains(jsondecode(aws_scheduler_schedule.drift["POLA"].target[0].input).AppSpecification.ContainerArguments, "tracking.uri='${var.tracking_uri}'")
    )
    error_message = "both scheduled jobs track to the environment's MLflow server, never a sqlite file inside the container"
  }

  assert {
    condition     = aws_scheduler_schedule.pipeline["POLA"].target[0].arn == "arn:aws:scheduler:::aws-sdk:sagemaker:createTrainingJob"
    error_message = "the monthly schedule calls CreateTrainingJob"
  }

  assert {
    condition = (
      jsondecode(aws_scheduler_schedule.pipeline["POLA"].target[0].input).AlgorithmSpecification.TrainingImage == var.image_uri
      && jsondecode(aws_scheduler_schedule.pipeline["POLA"].target[0].input).RoleArn == var.execution_role_arn
      && jsondecode(aws_scheduler_schedule.pipeline["POLA"].target[0].input).InputDataConfig[0].DataSource.S3DataSource.S3Uri == "s3://kon-ray-dev-data-123456789012/datasets/POLA/"
      && startswith(jsondecode(aws_scheduler_schedule.pipeline["POLA"].target[0].input).TrainingJobName, "kon-ray-dev-pola-")
    )
    error_message = "the monthly run is the cluster=sagemaker job: project image, execution role, data channel, <prefix>-<dataset>-* name"
  }

  assert {
    condition = (
      slice(jsondecode(jsondecode(aws_scheduler_schedule.pipeline["POLA"].target[0].input).HyperParameters.kon_overrides), 0, 3) == ["+dataset=POLA", "cluster=sagemaker", "train.rounds=50"]
      && contains(jsondecode(jsondecode(aws_scheduler_schedule.pipeline["POLA"].target[0].input).HyperParameters.kon_overrides), "cluster.kind=local")
    )
    error_message = "the config overrides reach the job as the kon_overrides hyperparameter"
  }

  assert {
    condition     = startswith(aws_scheduler_schedule.pipeline["POLA"].schedule_expression, "cron(") && aws_scheduler_schedule.pipeline["POLA"].state == "ENABLED"
    error_message = "the pipeline runs on a cron schedule"
  }

  assert {
    condition = (
      aws_scheduler_schedule.drift["POLA"].target[0].arn == "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob"
      && jsondecode(aws_scheduler_schedule.drift["POLA"].target[0].input).AppSpecification.ContainerEntrypoint == ["python", "-m", "kon_ray.drift"]
      && startswith(jsondecode(aws_scheduler_schedule.drift["POLA"].target[0].input).AppSpecification.ContainerArguments[0], "reference_summary=s3://")
      && endswith(jsondecode(aws_scheduler_schedule.drift["POLA"].target[0].input).AppSpecification.ContainerArguments[0], "/reference_summary.json")
    )
    error_message = "the drift schedule runs python -m kon_ray.drift against the saved reference_summary.json"
  }

  assert {
    condition     = aws_scheduler_schedule.pipeline["POLA"].kms_key_arn == var.kms_key_arn && aws_scheduler_schedule.drift["POLA"].kms_key_arn == var.kms_key_arn
    error_message = "schedule payloads are encrypted with the project key"
  }

  assert {
    condition = toset(flatten([for s in data.aws_iam_policy_document.scheduler.statement : tolist(s.actions)])) == toset([
      "sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob", "sagemaker:AddTags", "iam:PassRole", "kms:Decrypt",
    ])
    error_message = "the scheduler role may start exactly those jobs (no StartPipelineExecution)"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.scheduler_trust.statement :
      alltrue([for p in s.principals : p.type == "Service" && p.identifiers == toset(["scheduler.amazonaws.com"])])
      && anytrue([for c in s.condition : c.variable == "aws:SourceAccount"])
    ])
    error_message = "only EventBridge Scheduler of this account assumes the scheduler role"
  }
}

run "no_schedule_without_an_image" {
  command = plan

  module {
    source = "../modules/scheduled_runs"
  }

  variables {
    name_prefix        = "kon-ray-dev"
    image_uri          = null
    execution_role_arn = "arn:aws:iam::123456789012:role/kon-ray-dev-sagemaker-execution"
    data_bucket        = "kon-ray-dev-data-123456789012"
    kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    datasets           = { POLA = { input_prefix = "datasets/POLA/" } }
    tracking_uri       = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/kon-ray-dev"
  }

  assert {
    condition     = length(aws_scheduler_schedule.pipeline) == 0 && length(aws_scheduler_schedule.drift) == 0
    error_message = "no schedule before the first image exists"
  }
}

# ------------------------------------------------- Ray head (autoscaler) role
run "ray_head_may_launch_tagged_spot_workers_with_encrypted_volumes" {
  command = plan

  module {
    source = "../modules/iam"
  }

  variables {
    name_prefix                = "kon-ray-dev"
    data_bucket_arn            = "arn:aws:s3:::kon-ray-dev-data-123456789012"
    mlflow_bucket_arn          = "arn:aws:s3:::kon-ray-dev-mlflow-123456789012"
    kms_key_arn                = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    ecr_repository_arn         = "arn:aws:ecr:eu-west-1:123456789012:repository/kon-ray-dev"
    mlflow_tracking_server_arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/kon-ray-dev-mlflow"
    ray_cluster_name           = "kon-ray-dev"
    ray_subnet_ids             = ["subnet-0aaaaaaaaaaaaaaaa"]
    ray_security_group_arn     = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0123456789abcdef0"
  }

  # Spot workers: RunInstances creates a spot-instances-request, tagged with the cluster's tag at launch.
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.ray_autoscaler.statement :
      s.sid == "RunTaggedClusterInstances" && s.actions == toset(["ec2:RunInstances"])
      && contains(s.resources, "arn:aws:ec2:eu-west-1:123456789012:spot-instances-request/*")
      && anytrue([for c in s.condition : c.test == "StringEquals" && c.variable == "aws:RequestTag/ray-cluster-name" && c.values == tolist(["kon-ray-dev"])])
    ])
    error_message = "the head may launch spot requests only tagged ray-cluster-name = the cluster name"
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.ray_autoscaler.statement :
      s.sid == "TagOnLaunch" && s.actions == toset(["ec2:CreateTags"])
      && contains(s.resources, "arn:aws:ec2:eu-west-1:123456789012:spot-instances-request/*")
      && anytrue([for c in s.condition : c.variable == "ec2:CreateAction" && c.values == tolist(["RunInstances"])])
    ])
    error_message = "the head may tag spot requests, at launch only"
  }

  # Root volumes encrypted with the project key: grant (for AWS resources only) and data keys, on that key only.
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.ray_autoscaler.statement :
      s.actions == toset(["kms:CreateGrant"]) && s.resources == toset([var.kms_key_arn])
      && anytrue([for c in s.condition : c.test == "Bool" && c.variable == "kms:GrantIsForAWSResource" && c.values == tolist(["true"])])
    ])
    error_message = "the head may create grants on the project key for AWS resources (EBS) only"
  }

  assert {
    condition = alltrue([for a in ["kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"] : anytrue([
      for s in data.aws_iam_policy_document.ray_autoscaler.statement : contains(s.actions, a) && s.resources == toset([var.kms_key_arn])
    ])])
    error_message = "the head may generate data keys and re-encrypt with the project key, on that key only"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.ray_autoscaler.statement :
      !anytrue([for a in s.actions : startswith(a, "kms:")]) || s.resources == toset([var.kms_key_arn])
    ])
    error_message = "every KMS permission of the head names the project key only"
  }
}

# The stack gives every Ray node's role (EC2 head and workers, SageMaker instances) and the submitters the token.
run "ray_token_is_readable_by_head_workers_sagemaker_and_submitters" {
  command = plan

  variables {
    ray_job_submitter_arns = ["arn:aws:iam::123456789012:role/ml-operators"]
  }

  override_resource {
    target          = module.kon_ray.module.iam.aws_iam_role.ray_head
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/kon-ray-dev-ray-head" }
  }
  override_resource {
    target          = module.kon_ray.module.iam.aws_iam_role.ray_node
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/kon-ray-dev-ray-node" }
  }
  override_resource {
    target          = module.kon_ray.module.iam.aws_iam_role.sagemaker_execution
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/kon-ray-dev-sagemaker-execution" }
  }

  assert {
    condition = toset(module.kon_ray.ray_token_readers.principal_arns) == toset([
      "arn:aws:iam::123456789012:role/kon-ray-dev-ray-head",
      "arn:aws:iam::123456789012:role/kon-ray-dev-ray-node",
      "arn:aws:iam::123456789012:role/kon-ray-dev-sagemaker-execution",
      "arn:aws:iam::123456789012:role/ml-operators",
    ])
    error_message = "the token's resource policy admits exactly the head, the workers, the SageMaker execution role and the submitters"
  }

  assert {
    condition = module.kon_ray.ray_token_readers.role_names == {
      head      = "kon-ray-dev-ray-head"
      node      = "kon-ray-dev-ray-node"
      sagemaker = "kon-ray-dev-sagemaker-execution"
    }
    error_message = "the head, worker and SageMaker execution roles each get the token's read policy"
  }
}
