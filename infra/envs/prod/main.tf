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
  source = "../../modules/kon_ray_stack"

  environment                       = var.environment
  vpc_name                          = var.vpc_name
  private_subnet_tags               = var.private_subnet_tags
  dashboard_ingress_cidrs           = var.dashboard_ingress_cidrs
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

  code_source_dirs = {
    kon_ray = "${path.root}/../../../kon_ray"
    conf    = "${path.root}/../../../conf"
  }
}
