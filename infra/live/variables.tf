variable "aws_region" {
  type        = string
  description = "AWS region of the environment."
  default     = "eu-west-1"
}

variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod (set by <env>.tfvars; the backend file <env>.s3.tfbackend keeps its state apart)."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "allowed_account_ids" {
  type        = list(string)
  description = "AWS account IDs this environment may be applied to (empty = no guard)."
  default     = []

  validation {
    condition     = alltrue([for a in var.allowed_account_ids : can(regex("^[0-9]{12}$", a))])
    error_message = "allowed_account_ids must be 12-digit account IDs."
  }
}

variable "cost_center" {
  type        = string
  description = "CostCenter tag put on every resource (cost allocation)."
}

variable "owner" {
  type        = string
  description = "Owner tag: team or alias accountable for the environment."
}

variable "repository" {
  type        = string
  description = "Repository tag: where this infrastructure is defined."
  default     = "kon_ray/infra"
}

variable "extra_tags" {
  type        = map(string)
  description = "Additional default tags (cannot override Project, Environment, CostCenter, Owner, ManagedBy, Repository)."
  default     = {}
}

variable "vpc_name" {
  type        = string
  description = "Name tag of the existing VPC of this environment."
}

variable "private_subnet_tags" {
  type        = map(string)
  description = "Tags selecting the private subnets of that VPC."
  default     = { Tier = "private" }
}

variable "dashboard_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to reach the Ray dashboard/Jobs API on 8265 (VPN, bastion) when dashboard_ingress_enabled is true. Never 0.0.0.0/0."
  default     = []
}

variable "dashboard_ingress_enabled" {
  type        = bool
  description = "Open 8265 to dashboard_ingress_cidrs for direct Jobs API access (cluster.port_forward=false). Off by default: kon_ray tunnels over SSH (ssh_ingress_cidrs)."
  default     = false
}

variable "ssh_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to SSH into Ray nodes for `ray up`; empty disables SSH."
  default     = []
}

variable "https_egress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs reachable on 443 from the Ray nodes and Studio apps."
  default     = ["0.0.0.0/0"]
}

variable "ray_cluster_name" {
  type        = string
  description = "cluster_name of cluster/ec2.yaml for this environment."
}

variable "sagemaker_user_profile_name" {
  type        = string
  description = "SageMaker user profile owning the Code Editor space."
  default     = "kon-ray"
}

variable "code_editor_instance_type" {
  type        = string
  description = "Instance type of the Code Editor space."
  default     = "ml.t3.medium"
}

variable "code_editor_ebs_size_gb" {
  type        = number
  description = "EBS size of the Code Editor space, in GB."
  default     = 30
}

variable "code_editor_idle_timeout_minutes" {
  type        = number
  description = "Idle minutes before the Code Editor app shuts down."
  default     = 60
}

variable "home_efs_retention" {
  type        = string
  description = "Retain or Delete the SageMaker domain's EFS home volume on destroy."
  default     = "Retain"
}

variable "mlflow_server_size" {
  type        = string
  description = "MLflow tracking server size: Small, Medium or Large."
  default     = "Small"
}

variable "mlflow_version" {
  type        = string
  description = "MLflow version of the managed tracking server (3.0: the newest SageMaker documents); the client is the mlflow of requirements.lock; README (Tracking and sweeps) says whether the pair is supported and how to check it."
  default     = "3.0"
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days non-current object versions are kept."
  default     = 90
}

variable "access_log_retention_days" {
  type        = number
  description = "Days S3 access logs are kept."
  default     = 365
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the SageMaker log groups, in days."
  default     = 365
}

variable "ray_job_submitter_arns" {
  type        = list(string)
  description = "IAM roles that submit Ray jobs and may read the Ray token."
  default     = []
}

variable "pipeline_image_uri" {
  type        = string
  description = "Image the scheduled runs use (<ecr url>@sha256:<digest>, from the image workflow); null: no schedule yet."
  default     = null
}

variable "scheduled_datasets" {
  type = map(object({
    input_prefix     = string
    overrides        = optional(list(string), [])
    instance_type    = optional(string, "ml.m5.4xlarge")
    instance_count   = optional(number, 1)
    volume_size_gb   = optional(number, 100)
    max_runtime_s    = optional(number, 86400)
    drift_enabled    = optional(bool, true)
    batches_prefix   = optional(string)
    reference_prefix = optional(string)
  }))
  description = "Datasets with a monthly pipeline run and a drift check, by dataset name."
  default     = {}
}

variable "pipeline_schedule" {
  type        = string
  description = "Schedule expression of the monthly pipeline runs."
  default     = "cron(0 2 1 * ? *)"
}

variable "drift_schedule" {
  type        = string
  description = "Schedule expression of the drift checks."
  default     = "rate(6 hours)"
}

variable "schedules_enabled" {
  type        = bool
  description = "false pauses every schedule of the environment."
  default     = true
}

variable "github_owner" {
  type        = string
  description = "GitHub owner (organisation or user) of the repository whose workflows assume the CI roles."
}

variable "github_repository" {
  type        = string
  description = "GitHub repository whose workflows assume the CI roles."
  default     = "kon_ray"
}

variable "create_github_oidc_provider" {
  type        = bool
  description = "Create the account's GitHub OIDC provider (false when another root manages it)."
  default     = true
}

variable "state_bucket_name" {
  type        = string
  description = "Terraform state bucket (infra/bootstrap output state_bucket); the CI roles may read/write this environment's state in it."
}

variable "state_kms_key_arn" {
  type        = string
  description = "KMS key of the Terraform state (infra/bootstrap output state_kms_key_arn)."
}

variable "image_pull_principal_arns" {
  type        = list(string)
  description = "Roles of other accounts allowed to pull from this repository (dev: prod's image role)."
  default     = []
}

variable "promote_from_repository_arn" {
  type        = string
  description = "Repository prod's image role promotes from (dev's); null elsewhere."
  default     = null
}
