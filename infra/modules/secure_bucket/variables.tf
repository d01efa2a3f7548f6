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

variable "staging_prefix" {
  type        = string
  description = "Key prefix under which kon_ray stages a stage's outputs before publishing them (kon_ray/storage.py S3_STAGING_PREFIX)."
  default     = "_kon_staging/"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/$", var.staging_prefix))
    error_message = "staging_prefix must be one top-level folder name ending in '/'."
  }
}

variable "staging_expiration_days" {
  type        = number
  description = "Days after which staged objects left by an interrupted run expire (longer than any one stage runs)."
  default     = 3

  validation {
    condition     = var.staging_expiration_days >= 1
    error_message = "staging_expiration_days must be at least 1."
  }
}
