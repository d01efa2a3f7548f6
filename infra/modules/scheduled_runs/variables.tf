variable "name_prefix" {
  type        = string
  description = "Prefix of the environment's names (e.g. kon-ray-dev): the schedule group, the scheduler role, and the SageMaker job names (the execution role manages only <prefix>-* jobs)."
}

variable "image_uri" {
  type        = string
  description = "Project image the jobs run: <ecr url>@sha256:<digest> (preferred) or <ecr url>:<git sha>. Null creates no schedule (before the first image exists)."
  default     = null

  validation {
    condition     = var.image_uri == null || can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9._/-]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9._-]+)$", var.image_uri))
    error_message = "image_uri must be an ECR image reference: <account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:<digest> or :<tag>."
  }
}

variable "tracking_uri" {
  type        = string
  description = "MLflow tracking URI both scheduled jobs log to: the SageMaker-managed server's ARN (module mlflow_tracking's tracking_server_arn; the image carries the sagemaker-mlflow plugin). Without it a job would track to a sqlite file that vanishes with its container."

  validation {
    condition     = can(regex("^(arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:mlflow-tracking-server/.+|https://.+)$", var.tracking_uri))
    error_message = "tracking_uri must be a SageMaker MLflow tracking server ARN or an https:// MLflow server."
  }
}

variable "execution_role_arn" {
  type        = string
  description = "SageMaker execution role the jobs run as (the same role cluster=sagemaker passes)."
}

variable "data_bucket" {
  type        = string
  description = "Name of the data bucket: inputs under it, runs and drift reports written to it."
}

variable "datasets" {
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
  description = "Datasets run monthly, by dataset name (the +dataset=NAME of conf/dataset/): input_prefix is the S3 prefix of its data in the data bucket; overrides are extra Hydra overrides of the run (as on the command line); batches_prefix (default batches/<NAME>/) holds the new batches the drift check compares with reference_prefix (default reference/<NAME>/), whose reference_summary.json a run saved."
  default     = {}

  validation {
    condition     = alltrue([for k, _ in var.datasets : can(regex("^[A-Za-z0-9][A-Za-z0-9_]{0,19}$", k))])
    error_message = "Dataset names must be 1-20 letters, digits or underscores (they go into 63-character SageMaker job names)."
  }

  validation {
    condition     = alltrue([for _, d in var.datasets : d.instance_count >= 1 && !startswith(d.input_prefix, "/") && !startswith(d.input_prefix, "s3://")])
    error_message = "instance_count must be >= 1 and input_prefix a key prefix inside the data bucket (no s3://, no leading /)."
  }
}

variable "pipeline_schedule" {
  type        = string
  description = "When the pipeline runs, as an EventBridge Scheduler expression (default: 02:00 on the 1st of every month)."
  default     = "cron(0 2 1 * ? *)"
}

variable "drift_schedule" {
  type        = string
  description = "When the drift check of new batches runs (default: every 6 hours)."
  default     = "rate(6 hours)"
}

variable "schedule_timezone" {
  type        = string
  description = "IANA time zone of the cron expressions."
  default     = "Europe/Dublin"
}

variable "enabled" {
  type        = bool
  description = "ENABLED or DISABLED state of every schedule (false pauses them without deleting them)."
  default     = true
}

variable "drift_instance_type" {
  type        = string
  description = "Instance type of the drift-check processing job."
  default     = "ml.m5.xlarge"
}

variable "drift_max_runtime_s" {
  type        = number
  description = "MaxRuntimeInSeconds of a drift check."
  default     = 3600
}

variable "kms_key_arn" {
  type        = string
  description = "Project KMS key: encrypts the schedules' payloads and the jobs' volumes and outputs."
}
