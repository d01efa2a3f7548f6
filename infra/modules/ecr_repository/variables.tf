variable "name" {
  type        = string
  description = "Name of the ECR repository (e.g. kon-ray-dev)."

  validation {
    condition     = can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", var.name))
    error_message = "name must be a valid ECR repository name (lowercase)."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the customer-managed KMS key encrypting the images at rest."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "pull_principal_role_arns" {
  type        = list(string)
  description = "IAM roles (possibly of other accounts) allowed to pull images, e.g. prod's image role promoting dev's image by digest."
  default     = []
}
