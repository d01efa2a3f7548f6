# The whole kon_ray platform for one environment. The one root module
# (infra/live) configures the provider/backend and calls this module with the
# values of infra/live/<env>.tfvars.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_vpc" "this" {
  tags = {
    Name = var.vpc_name
  }
}

data "aws_subnets" "private" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.this.id]
  }

  tags = var.private_subnet_tags
}

locals {
  prefix     = "${var.project}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  subnet_ids = sort(data.aws_subnets.private.ids)

  mlflow_server_name = "${local.prefix}-mlflow"
  # Built from its parts (the format AWS documents) so IAM policies can name
  # the server before it exists, without a dependency cycle.
  mlflow_server_arn = "arn:${data.aws_partition.current.partition}:sagemaker:${local.region}:${local.account_id}:mlflow-tracking-server/${local.mlflow_server_name}"
}

module "kms" {
  source = "../kms_key"

  alias       = local.prefix
  description = "kon_ray ${var.environment}: S3 buckets, ECR images, SageMaker storage and logs, secrets, schedules"

  allow_cloudwatch_logs = true
}

module "access_logs" {
  source = "../access_logs_bucket"

  bucket_name        = "${local.prefix}-access-logs-${local.account_id}"
  log_retention_days = var.access_log_retention_days
  force_destroy      = var.force_destroy
}

module "data_bucket" {
  source = "../secure_bucket"

  bucket_name                       = "${local.prefix}-data-${local.account_id}"
  kms_key_arn                       = module.kms.key_arn
  access_log_bucket_name            = module.access_logs.bucket_name
  noncurrent_version_retention_days = var.noncurrent_version_retention_days
  force_destroy                     = var.force_destroy
}

module "mlflow_bucket" {
  source = "../secure_bucket"

  bucket_name                       = "${local.prefix}-mlflow-${local.account_id}"
  kms_key_arn                       = module.kms.key_arn
  access_log_bucket_name            = module.access_logs.bucket_name
  noncurrent_version_retention_days = var.noncurrent_version_retention_days
  force_destroy                     = var.force_destroy
}

module "ecr" {
  source = "../ecr_repository"

  name                     = local.prefix
  kms_key_arn              = module.kms.key_arn
  pull_principal_role_arns = var.image_pull_principal_arns
}

module "network" {
  source = "../ray_network"

  name_prefix               = local.prefix
  vpc_id                    = data.aws_vpc.this.id
  dashboard_ingress_cidrs   = var.dashboard_ingress_cidrs
  dashboard_ingress_enabled = var.dashboard_ingress_enabled
  ssh_ingress_cidrs         = var.ssh_ingress_cidrs
  https_egress_cidrs        = var.https_egress_cidrs
}

module "iam" {
  source = "../iam"

  name_prefix                = local.prefix
  data_bucket_arn            = module.data_bucket.bucket_arn
  mlflow_bucket_arn          = module.mlflow_bucket.bucket_arn
  kms_key_arn                = module.kms.key_arn
  ecr_repository_arn         = module.ecr.repository_arn
  mlflow_tracking_server_arn = local.mlflow_server_arn
  ray_cluster_name           = var.ray_cluster_name
  ray_subnet_ids             = local.subnet_ids
  ray_security_group_arn     = module.network.ray_security_group_arn
}

module "mlflow" {
  source = "../mlflow_tracking"

  name               = local.mlflow_server_name
  role_arn           = module.iam.mlflow_server_role_arn
  artifact_store_uri = "s3://${module.mlflow_bucket.bucket_name}/artifacts"
  size               = var.mlflow_server_size
  mlflow_version     = var.mlflow_version

  # The server checks its artifact store on creation: its role policy must exist first.
  depends_on = [module.iam]
}

module "studio" {
  source = "../sagemaker_studio"

  domain_name             = local.prefix
  vpc_id                  = data.aws_vpc.this.id
  subnet_ids              = local.subnet_ids
  security_group_ids      = [module.network.studio_security_group_id]
  kms_key_arn             = module.kms.key_arn
  execution_role_arn      = module.iam.sagemaker_execution_role_arn
  user_profile_name       = var.sagemaker_user_profile_name
  space_name              = "${local.prefix}-code-editor"
  instance_type           = var.code_editor_instance_type
  ebs_volume_size_in_gb   = var.code_editor_ebs_size_gb
  idle_timeout_in_minutes = var.code_editor_idle_timeout_minutes
  home_efs_retention      = var.home_efs_retention
}

module "code" {
  source = "../code_upload"

  bucket_name = module.data_bucket.bucket_name
  kms_key_arn = module.kms.key_arn
  key_prefix  = "code"
  source_dirs = var.code_source_dirs
}

# SageMaker writes job logs to these account-wide groups; managing them here
# gives them a retention and the project key (SageMaker would otherwise create
# them without either). In an account where they already exist, import them
# first (infra/README.md).
resource "aws_cloudwatch_log_group" "sagemaker" {
  for_each = toset(var.sagemaker_log_groups)

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = module.kms.key_arn
}

# Read at start by every Ray node: the EC2 head and workers, and the SageMaker
# instances (kon_ray/cluster/sagemaker_entry.py, as the execution role).
module "ray_token" {
  source = "../ray_token_secret"

  name        = "${local.prefix}-ray-token"
  kms_key_arn = module.kms.key_arn
  node_role_names = {
    node      = module.iam.ray_node_role_name
    head      = module.iam.ray_head_role_name
    sagemaker = module.iam.sagemaker_execution_role_name
  }
  node_role_arns = [
    module.iam.ray_node_role_arn,
    module.iam.ray_head_role_arn,
    module.iam.sagemaker_execution_role_arn,
  ]
  submitter_principal_arns = var.ray_job_submitter_arns
}

module "schedules" {
  source = "../scheduled_runs"

  name_prefix        = local.prefix
  image_uri          = var.pipeline_image_uri
  execution_role_arn = module.iam.sagemaker_execution_role_arn
  tracking_uri       = module.mlflow.tracking_server_arn
  data_bucket        = module.data_bucket.bucket_name
  kms_key_arn        = module.kms.key_arn
  datasets           = var.scheduled_datasets
  pipeline_schedule  = var.pipeline_schedule
  drift_schedule     = var.drift_schedule
  schedule_timezone  = var.schedule_timezone
  enabled            = var.schedules_enabled

  depends_on = [aws_cloudwatch_log_group.sagemaker]
}

module "ci" {
  source = "../ci_identities"

  name_prefix                 = local.prefix
  environment                 = var.environment
  github_owner                = var.github_owner
  github_repository           = var.github_repository
  create_oidc_provider        = var.create_github_oidc_provider
  state_bucket_arn            = "arn:${data.aws_partition.current.partition}:s3:::${var.state_bucket_name}"
  state_key_prefix            = "kon_ray/${var.environment}/"
  state_kms_key_arn           = var.state_kms_key_arn
  ecr_repository_arn          = module.ecr.repository_arn
  promote_from_repository_arn = var.promote_from_repository_arn
}
