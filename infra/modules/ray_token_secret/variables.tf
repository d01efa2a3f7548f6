variable "name" {
  type        = string
  description = "Name of the secret (e.g. kon-ray-dev-ray-token)."
}

variable "kms_key_arn" {
  type        = string
  description = "Project KMS key encrypting the secret."
}

variable "node_role_names" {
  type        = map(string)
  description = "IAM roles of the Ray nodes, by a static label (e.g. { node = ..., head = ..., sagemaker = ... }: EC2 workers, EC2 head, SageMaker execution role): they get GetSecretValue on this secret."
}

variable "node_role_arns" {
  type        = list(string)
  description = "ARNs of the same Ray node roles, the SageMaker execution role included (the secret's resource policy admits them)."
}

variable "submitter_principal_arns" {
  type        = list(string)
  description = "IAM role ARNs of the principals that submit Ray jobs (operators, CI); they also need GetSecretValue on this secret and kms:Decrypt on the key in their own policies."
  default     = []

  validation {
    condition     = alltrue([for a in var.submitter_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", a))])
    error_message = "submitter_principal_arns must be IAM role or user ARNs."
  }
}

variable "recovery_window_in_days" {
  type        = number
  description = "Days a deleted secret can still be restored."
  default     = 7
}
