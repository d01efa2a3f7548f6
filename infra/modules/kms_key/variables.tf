variable "alias" {
  type        = string
  description = "Alias of the key, without the \"alias/\" prefix (e.g. kon-ray-dev)."

  validation {
    condition     = can(regex("^[a-zA-Z0-9/_-]+$", var.alias)) && !startswith(var.alias, "aws/")
    error_message = "The alias may contain only letters, digits, '/', '_' and '-', and must not start with 'aws/'."
  }
}

variable "description" {
  type        = string
  description = "Human-readable description of what the key encrypts."
}

variable "deletion_window_in_days" {
  type        = number
  description = "Waiting period, in days, before a key scheduled for deletion is deleted (7-30)."
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be between 7 and 30."
  }
}

variable "rotation_period_in_days" {
  type        = number
  description = "Automatic key rotation period in days (90-2560)."
  default     = 365

  validation {
    condition     = var.rotation_period_in_days >= 90 && var.rotation_period_in_days <= 2560
    error_message = "rotation_period_in_days must be between 90 and 2560."
  }
}

variable "allow_cloudwatch_logs" {
  type        = bool
  description = "Let CloudWatch Logs of this account and region use the key (log groups encrypted with it)."
  default     = false
}
