variable "aws_region" {
  type        = string
  description = "Region of the state bucket (the env backends use the same)."
  default     = "eu-west-1"
}

variable "project" {
  type        = string
  description = "Project slug used in the bucket and key names."
  default     = "kon-ray"
}

variable "allowed_account_ids" {
  type        = list(string)
  description = "AWS account IDs this root may be applied to (empty = no guard)."
  default     = []
}

variable "cost_center" {
  type        = string
  description = "CostCenter tag of the state resources."
  default     = "ml-platform-shared"
}

variable "owner" {
  type        = string
  description = "Owner tag of the state resources."
  default     = "ml-platform"
}

variable "state_version_retention_days" {
  type        = number
  description = "Days old state versions are kept for rollback."
  default     = 365
}
