variable "aws_region" {
  type        = string
  description = "AWS region of the environment."
  default     = "eu-west-1"
}

variable "environment" {
  type        = string
  description = "Environment name; must match this root's directory."
  default     = "dev"

  validation {
    condition     = var.environment == "dev"
    error_message = "This root deploys the dev environment only."
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
  description = "IPv4 CIDRs allowed to reach the Ray dashboard/Jobs API on 8265 (VPN, bastion). Never 0.0.0.0/0."
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
  description = "MLflow version of the managed tracking server."
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
