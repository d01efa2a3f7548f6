# The one root module of every environment: the values are in <env>.tfvars,
# the state location in <env>.s3.tfbackend (see infra/README.md).
provider "aws" {
  region = var.aws_region

  # Refuse to run against any other account than the one(s) of this environment.
  allowed_account_ids = length(var.allowed_account_ids) > 0 ? var.allowed_account_ids : null

  # Cost tracking: every resource of this root carries these tags (activate
  # Project, Environment and CostCenter as cost allocation tags in Billing).
  default_tags {
    tags = merge(var.extra_tags, {
      Project     = "kon_ray"
      Environment = var.environment
      CostCenter  = var.cost_center
      Owner       = var.owner
      ManagedBy   = "terraform"
      Repository  = var.repository
    })
  }
}

module "kon_ray" {
  source = "../modules/kon_ray_stack"

  environment                       = var.environment
  vpc_name                          = var.vpc_name
  private_subnet_tags               = var.private_subnet_tags
  dashboard_ingress_cidrs           = var.dashboard_ingress_cidrs
  dashboard_ingress_enabled         = var.dashboard_ingress_enabled
  ssh_ingress_cidrs                 = var.ssh_ingress_cidrs
  https_egress_cidrs                = var.https_egress_cidrs
  ray_cluster_name                  = var.ray_cluster_name
  sagemaker_user_profile_name       = var.sagemaker_user_profile_name
  code_editor_instance_type         = var.code_editor_instance_type
  code_editor_ebs_size_gb           = var.code_editor_ebs_size_gb
  code_editor_idle_timeout_minutes  = var.code_editor_idle_timeout_minutes
  home_efs_retention                = var.home_efs_retention
  mlflow_server_size                = var.mlflow_server_size
  mlflow_version                    = var.mlflow_version
  noncurrent_version_retention_days = var.noncurrent_version_retention_days
  access_log_retention_days         = var.access_log_retention_days
  force_destroy                     = false
  log_retention_days                = var.log_retention_days
  ray_job_submitter_arns            = var.ray_job_submitter_arns
  pipeline_image_uri                = var.pipeline_image_uri
  scheduled_datasets                = var.scheduled_datasets
  pipeline_schedule                 = var.pipeline_schedule
  drift_schedule                    = var.drift_schedule
  schedules_enabled                 = var.schedules_enabled
  github_owner                      = var.github_owner
  github_repository                 = var.github_repository
  create_github_oidc_provider       = var.create_github_oidc_provider
  state_bucket_name                 = var.state_bucket_name
  state_kms_key_arn                 = var.state_kms_key_arn
  image_pull_principal_arns         = var.image_pull_principal_arns
  promote_from_repository_arn       = var.promote_from_repository_arn

  code_source_dirs = {
    kon_ray = "${path.root}/../../kon_ray"
    conf    = "${path.root}/../../conf"
  }
}
