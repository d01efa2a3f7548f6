# The whole kon_ray platform for one environment. Each env root
# (infra/envs/<env>) configures the provider/backend and calls this module.

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
  description = "kon_ray ${var.environment}: S3 buckets, ECR images, SageMaker domain storage"
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

  name        = local.prefix
  kms_key_arn = module.kms.key_arn
}

module "network" {
  source = "../ray_network"

  name_prefix             = local.prefix
  vpc_id                  = data.aws_vpc.this.id
  dashboard_ingress_cidrs = var.dashboard_ingress_cidrs
  ssh_ingress_cidrs       = var.ssh_ingress_cidrs
  https_egress_cidrs      = var.https_egress_cidrs
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
