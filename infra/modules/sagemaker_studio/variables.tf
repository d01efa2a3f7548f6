variable "domain_name" {
  type        = string
  description = "Name of the SageMaker domain."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the domain (VpcOnly network access)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the domain's apps."

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "At least one subnet is required."
  }
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups attached to the domain's apps (the Studio group of the ray_network module)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key encrypting the domain's EFS home volume and EBS space storage."
}

variable "execution_role_arn" {
  type        = string
  description = "SageMaker execution role used by the user profile and the space."
}

variable "user_profile_name" {
  type        = string
  description = "Name of the SageMaker user profile owning the Code Editor space."
}

variable "space_name" {
  type        = string
  description = "Name of the Code Editor space."
  default     = "kon-ray-code-editor"
}

variable "instance_type" {
  type        = string
  description = "Instance type of the Code Editor app."
  default     = "ml.t3.medium"

  validation {
    condition     = startswith(var.instance_type, "ml.")
    error_message = "instance_type must be a SageMaker instance type (ml.*)."
  }
}

variable "ebs_volume_size_in_gb" {
  type        = number
  description = "EBS volume size of the Code Editor space, in GB."
  default     = 30

  validation {
    condition     = var.ebs_volume_size_in_gb >= 5 && var.ebs_volume_size_in_gb <= 16384
    error_message = "ebs_volume_size_in_gb must be between 5 and 16384."
  }
}

variable "max_ebs_volume_size_in_gb" {
  type        = number
  description = "Largest EBS volume a space of this domain may request, in GB."
  default     = 100
}

variable "idle_timeout_in_minutes" {
  type        = number
  description = "Idle time after which the Code Editor app is shut down (cost control)."
  default     = 60

  validation {
    condition     = var.idle_timeout_in_minutes >= 60 && var.idle_timeout_in_minutes <= 480
    error_message = "idle_timeout_in_minutes must be between 60 and 480 (the domain's min/max)."
  }
}

variable "home_efs_retention" {
  type        = string
  description = "What happens to the domain's EFS home volume when the domain is deleted: Retain or Delete."
  default     = "Retain"

  validation {
    condition     = contains(["Retain", "Delete"], var.home_efs_retention)
    error_message = "home_efs_retention must be Retain or Delete."
  }
}
