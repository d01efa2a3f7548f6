variable "project" {
  type        = string
  description = "Project slug used in every resource name (lowercase, hyphens)."
  default     = "kon-ray"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.project))
    error_message = "project must be 2-21 lowercase letters, digits or hyphens."
  }
}

variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "vpc_name" {
  type        = string
  description = "Name tag of the existing VPC hosting the Ray cluster and the SageMaker domain."
}

variable "private_subnet_tags" {
  type        = map(string)
  description = "Tags selecting the VPC's private subnets used by the Ray nodes and the SageMaker domain."
  default     = { Tier = "private" }
}

variable "dashboard_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to reach the Ray dashboard/Jobs API (8265) when dashboard_ingress_enabled is true. Never 0.0.0.0/0."
  default     = []
}

variable "dashboard_ingress_enabled" {
  type        = bool
  description = "Open 8265 to dashboard_ingress_cidrs (direct Jobs API access, cluster.port_forward=false). Off: clients tunnel over SSH."
  default     = false
}

variable "ssh_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to SSH into Ray nodes for `ray up`; empty disables SSH."
  default     = []
}

variable "https_egress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs reachable on 443 from Ray nodes and Studio apps."
  default     = ["0.0.0.0/0"]
}

variable "ray_cluster_name" {
  type        = string
  description = "cluster_name of cluster/ec2.yaml; scopes the head node's autoscaler permissions."
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
  description = "Retain or Delete the domain's EFS home volume when the domain is destroyed."
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
  description = "Days non-current object versions are kept in the data and MLflow buckets."
  default     = 90
}

variable "access_log_retention_days" {
  type        = number
  description = "Days S3 access logs are kept."
  default     = 365
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete non-empty buckets. Keep false outside throw-away environments."
  default     = false
}

variable "code_source_dirs" {
  type        = map(string)
  description = "Local directories uploaded to s3://<data bucket>/code/<name>/ (the kon_ray package and conf/)."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the SageMaker log groups, in days (a value CloudWatch accepts, e.g. 365, 731)."
  default     = 365
}

variable "sagemaker_log_groups" {
  type        = list(string)
  description = "SageMaker log groups managed with retention and the project key (account-wide: one environment per account)."
  default     = ["/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/studio"]
}

variable "ray_job_submitter_arns" {
  type        = list(string)
  description = "IAM roles that submit Ray jobs and may read the Ray token (besides the Ray node roles)."
  default     = []
}

variable "pipeline_image_uri" {
  type        = string
  description = "Image of the scheduled runs (<ecr url>@sha256:<digest>); null: no schedule yet."
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
  description = "Datasets with a monthly pipeline run and a drift check (see modules/scheduled_runs)."
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

variable "schedule_timezone" {
  type        = string
  description = "Time zone of the schedules' cron expressions."
  default     = "Europe/Dublin"
}

variable "schedules_enabled" {
  type        = bool
  description = "false pauses every schedule."
  default     = true
}

variable "github_owner" {
  type        = string
  description = "GitHub owner of the repository whose workflows may assume the CI roles."
}

variable "github_repository" {
  type        = string
  description = "GitHub repository whose workflows may assume the CI roles."
}

variable "create_github_oidc_provider" {
  type        = bool
  description = "Create the account's GitHub OIDC provider (false: it exists, managed elsewhere)."
  default     = true
}

variable "state_bucket_name" {
  type        = string
  description = "Terraform state bucket (infra/bootstrap output state_bucket)."
}

variable "state_kms_key_arn" {
  type        = string
  description = "KMS key of the Terraform state (infra/bootstrap output state_kms_key_arn)."
}

variable "image_pull_principal_arns" {
  type        = list(string)
  description = "IAM roles of other accounts allowed to pull from this environment's repository (dev: prod's image role, which promotes by digest)."
  default     = []
}

variable "promote_from_repository_arn" {
  type        = string
  description = "ECR repository this environment's image role pulls promoted images from (prod: dev's repository); null builds here."
  default     = null
}
