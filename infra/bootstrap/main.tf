provider "aws" {
  region = var.aws_region

  allowed_account_ids = length(var.allowed_account_ids) > 0 ? var.allowed_account_ids : null

  default_tags {
    tags = {
      Project     = "kon_ray"
      Environment = "shared"
      CostCenter  = var.cost_center
      Owner       = var.owner
      ManagedBy   = "terraform"
      Repository  = "kon_ray/infra/bootstrap"
    }
  }
}

data "aws_caller_identity" "current" {}

locals {
  prefix = "${var.project}-tfstate-${data.aws_caller_identity.current.account_id}"
}

module "kms" {
  source = "../modules/kms_key"

  alias       = "${var.project}-tfstate"
  description = "kon_ray Terraform state"
}

module "access_logs" {
  source = "../modules/access_logs_bucket"

  bucket_name        = "${local.prefix}-logs"
  log_retention_days = 365
}

# Holds infra/envs/<env> states (kon_ray/<env>/terraform.tfstate) and their
# S3-native lock files (.tflock). Versioned, so any state can be rolled back.
module "state_bucket" {
  source = "../modules/secure_bucket"

  bucket_name                       = local.prefix
  kms_key_arn                       = module.kms.key_arn
  access_log_bucket_name            = module.access_logs.bucket_name
  noncurrent_version_retention_days = var.state_version_retention_days
}
