variable "bucket_name" {
  type        = string
  description = "Globally unique name of the bucket."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-')."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the customer-managed KMS key used for default SSE-KMS encryption."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "access_log_bucket_name" {
  type        = string
  description = "Name of the bucket receiving S3 server access logs (see the access_logs_bucket module)."
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days a non-current (overwritten or deleted) object version is kept before it expires."
  default     = 90

  validation {
    condition     = var.noncurrent_version_retention_days >= 7
    error_message = "Keep non-current versions for at least 7 days."
  }
}

variable "additional_policy_documents" {
  type        = list(string)
  description = "Extra bucket-policy JSON documents merged into the TLS-only policy (statement SIDs must be unique)."
  default     = []
}

variable "force_destroy" {
  type        = bool
  description = "Allow Terraform to delete the bucket even if it still holds objects. Keep false outside throw-away environments."
  default     = false
}
