variable "name_prefix" {
  type        = string
  description = "Prefix of role, profile and SageMaker job names (e.g. kon-ray-dev); job permissions are scoped to names starting with it."
}

variable "data_bucket_arn" {
  type        = string
  description = "ARN of the data/artifacts bucket."
}

variable "mlflow_bucket_arn" {
  type        = string
  description = "ARN of the MLflow artifacts bucket."
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the KMS key encrypting the buckets and the ECR repository."
}

variable "ecr_repository_arn" {
  type        = string
  description = "ARN of the project's ECR repository (pull access only)."
}

variable "mlflow_tracking_server_arn" {
  type        = string
  description = "ARN of the SageMaker managed MLflow tracking server."
}

variable "ray_cluster_name" {
  type        = string
  description = "Ray cluster_name in cluster/ec2.yaml; the autoscaler may only manage instances tagged ray-cluster-name = this value."

  validation {
    condition     = length(var.ray_cluster_name) > 0
    error_message = "ray_cluster_name must not be empty."
  }
}

variable "ray_subnet_ids" {
  type        = list(string)
  description = "Subnets the Ray autoscaler may launch workers into."

  validation {
    condition     = length(var.ray_subnet_ids) > 0
    error_message = "At least one subnet is required."
  }
}

variable "ray_security_group_arn" {
  type        = string
  description = "ARN of the Ray security group, the only one workers may be launched with."
}
