variable "name_prefix" {
  type        = string
  description = "Prefix of the environment's resource names (e.g. kon-ray-dev); the plan and apply roles are scoped to resources named with it."
}

variable "environment" {
  type        = string
  description = "Environment these identities serve: dev, staging or prod (the GitHub environment the apply and image jobs run in)."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "github_owner" {
  type        = string
  description = "GitHub organisation or user owning the repository (the OWNER of repo:OWNER/REPO in the token's sub claim)."

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,38}$", var.github_owner))
    error_message = "github_owner must be a GitHub user or organisation name."
  }
}

variable "github_repository" {
  type        = string
  description = "Name of the GitHub repository (the REPO of repo:OWNER/REPO in the token's sub claim)."

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,100}$", var.github_repository))
    error_message = "github_repository must be a GitHub repository name."
  }
}

variable "plan_environment" {
  type        = string
  description = "GitHub environment the plan jobs run in (null = <environment>-plan). dev-plan admits pull requests; staging-plan and prod-plan are restricted to main in GitHub."
  default     = null
}

variable "create_oidc_provider" {
  type        = bool
  description = "Create the account's GitHub OIDC provider (true), or look up an existing one (false: another root already manages it)."
  default     = true
}

variable "state_bucket_arn" {
  type        = string
  description = "ARN of the Terraform state bucket (infra/bootstrap)."
}

variable "state_key_prefix" {
  type        = string
  description = "Key prefix of this environment's state in the state bucket (e.g. kon_ray/dev/)."
}

variable "state_kms_key_arn" {
  type        = string
  description = "ARN of the KMS key encrypting the Terraform state."
}

variable "ecr_repository_arn" {
  type        = string
  description = "ARN of the environment's ECR repository: the only one the image role may push to."
}

variable "promote_from_repository_arn" {
  type        = string
  description = "ARN of the ECR repository images are promoted from (prod: the dev repository); the image role may pull from it. Null when images are built here."
  default     = null
}

variable "max_session_duration" {
  type        = number
  description = "Maximum session length of the CI roles, in seconds."
  default     = 3600
}
