variable "name" {
  type        = string
  description = "Tracking server name (part of its ARN; the IAM module scopes access to it)."

  validation {
    condition     = can(regex("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$", var.name))
    error_message = "name may contain only letters, digits and hyphens."
  }
}

variable "role_arn" {
  type        = string
  description = "ARN of the role the tracking server assumes to reach its artifact store and the Model Registry."
}

variable "artifact_store_uri" {
  type        = string
  description = "S3 URI of the MLflow artifact store (s3://<mlflow bucket>/<prefix>)."

  validation {
    condition     = startswith(var.artifact_store_uri, "s3://")
    error_message = "artifact_store_uri must be an s3:// URI."
  }
}

variable "size" {
  type        = string
  description = "Tracking server size: Small, Medium or Large."
  default     = "Small"

  validation {
    condition     = contains(["Small", "Medium", "Large"], var.size)
    error_message = "size must be Small, Medium or Large."
  }
}

variable "mlflow_version" {
  type        = string
  description = "MLflow version of the managed server (3.0: the newest SageMaker documents for tracking servers); the client is the mlflow of requirements.lock; README (Tracking and sweeps) says whether the pair is supported and how to check it."
  default     = "3.0"
}

variable "weekly_maintenance_window_start" {
  type        = string
  description = "Weekly maintenance window start, UTC, as Ddd:HH:MM (e.g. Sun:03:00)."
  default     = "Sun:03:00"

  validation {
    condition     = can(regex("^(Mon|Tue|Wed|Thu|Fri|Sat|Sun):([01][0-9]|2[0-3]):[0-5][0-9]$", var.weekly_maintenance_window_start))
    error_message = "weekly_maintenance_window_start must look like Sun:03:00."
  }
}
