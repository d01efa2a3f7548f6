variable "bucket_name" {
  type        = string
  description = "Globally unique name of the access-log bucket."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-')."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Number of days access-log objects are kept before they expire."
  default     = 365

  validation {
    condition     = var.log_retention_days >= 30
    error_message = "Keep access logs for at least 30 days."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Allow Terraform to delete the bucket even if it still holds objects. Keep false outside throw-away environments."
  default     = false
}
