# Contract with conf/cluster/ec2.yaml, conf/cluster/sagemaker.yaml and the
# SageMaker launcher; see infra/README.md for the mapping.

output "aws_region" {
  description = "Region of the environment."
  value       = module.kon_ray.aws_region
}

output "sagemaker_execution_role_arn" {
  description = "SageMaker execution role ARN (sagemaker.yaml role_arn)."
  value       = module.kon_ray.sagemaker_execution_role_arn
}

output "ray_node_instance_profile_arn" {
  description = "Ray worker instance profile ARN (ec2.yaml instance_profile_arn, worker nodes)."
  value       = module.kon_ray.ray_node_instance_profile_arn
}

output "ray_head_instance_profile_arn" {
  description = "Ray head instance profile ARN (head node: adds the scoped autoscaler permissions)."
  value       = module.kon_ray.ray_head_instance_profile_arn
}

output "ray_security_group_id" {
  description = "Ray security group ID (ec2.yaml security_group_id)."
  value       = module.kon_ray.ray_security_group_id
}

output "ray_subnet_ids" {
  description = "All private subnets of the environment (Ray nodes, SageMaker domain)."
  value       = module.kon_ray.ray_subnet_ids
}

output "ray_subnet_id" {
  description = "Single private subnet for Ray nodes (ec2.yaml subnet_id)."
  value       = module.kon_ray.ray_subnet_id
}

output "ray_cluster_name" {
  description = "Ray cluster name the head's IAM permissions are scoped to (ec2.yaml cluster_name)."
  value       = module.kon_ray.ray_cluster_name
}

output "sagemaker_job_name_prefix" {
  description = "Job name prefix the execution role may manage (sagemaker.yaml job_name_prefix)."
  value       = module.kon_ray.sagemaker_job_name_prefix
}

output "ray_ports" {
  description = "Fixed Ray ports opened between cluster members."
  value       = module.kon_ray.ray_ports
}

output "data_bucket" {
  description = "Data/artifacts bucket name."
  value       = module.kon_ray.data_bucket
}

output "mlflow_bucket" {
  description = "MLflow artifacts bucket name."
  value       = module.kon_ray.mlflow_bucket
}

output "s3_output_uri" {
  description = "Default pipeline output URI (sagemaker.yaml s3_output)."
  value       = module.kon_ray.s3_output_uri
}

output "code_s3_uri" {
  description = "S3 URI of the uploaded kon_ray/ and conf/."
  value       = module.kon_ray.code_s3_uri
}

output "ecr_repository_url" {
  description = "ECR repository URL (image = <url>:<git sha>)."
  value       = module.kon_ray.ecr_repository_url
}

output "mlflow_tracking_server_arn" {
  description = "MLflow tracking server ARN (tracking URI)."
  value       = module.kon_ray.mlflow_tracking_server_arn
}

output "mlflow_tracking_server_url" {
  description = "MLflow UI URL."
  value       = module.kon_ray.mlflow_tracking_server_url
}

output "kms_key_arn" {
  description = "KMS key of the environment."
  value       = module.kon_ray.kms_key_arn
}

output "sagemaker_domain_id" {
  description = "SageMaker domain ID."
  value       = module.kon_ray.sagemaker_domain_id
}

output "code_editor_space_name" {
  description = "Code Editor space name."
  value       = module.kon_ray.code_editor_space_name
}

output "ray_token_secret_arn" {
  description = "Secrets Manager ARN of the Ray authentication token."
  value       = module.kon_ray.ray_token_secret_arn
}

output "schedule_group_name" {
  description = "EventBridge Scheduler group of the scheduled runs."
  value       = module.kon_ray.schedule_group_name
}

output "pipeline_schedule_names" {
  description = "Monthly pipeline schedules, by dataset."
  value       = module.kon_ray.pipeline_schedule_names
}

output "drift_schedule_names" {
  description = "Drift-check schedules, by dataset."
  value       = module.kon_ray.drift_schedule_names
}

output "ci_plan_role_arn" {
  description = "GitHub variable AWS_PLAN_ROLE_ARN of environment <env>-plan."
  value       = module.kon_ray.ci_plan_role_arn
}

output "ci_apply_role_arn" {
  description = "GitHub variable AWS_APPLY_ROLE_ARN of environment <env>."
  value       = module.kon_ray.ci_apply_role_arn
}

output "ci_image_role_arn" {
  description = "GitHub variable AWS_IMAGE_ROLE_ARN of environment <env>."
  value       = module.kon_ray.ci_image_role_arn
}

output "ecr_repository_arn" {
  description = "ARN of the environment's ECR repository."
  value       = module.kon_ray.ecr_repository_arn
}
