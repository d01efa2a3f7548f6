output "aws_region" {
  description = "Region of the environment."
  value       = local.region
}

output "sagemaker_execution_role_arn" {
  description = "SageMaker execution role (conf/cluster/sagemaker.yaml role_arn)."
  value       = module.iam.sagemaker_execution_role_arn
}

output "ray_node_instance_profile_arn" {
  description = "Instance profile of Ray worker nodes (conf/cluster/ec2.yaml instance_profile_arn of the worker nodes)."
  value       = module.iam.ray_node_instance_profile_arn
}

output "ray_head_instance_profile_arn" {
  description = "Instance profile of the Ray head node, with scoped autoscaler permissions (head node of cluster/ec2.yaml)."
  value       = module.iam.ray_head_instance_profile_arn
}

output "ray_security_group_id" {
  description = "Security group of the Ray nodes (conf/cluster/ec2.yaml security_group_id)."
  value       = module.network.ray_security_group_id
}

output "ray_subnet_ids" {
  description = "All private subnets of the environment (Ray nodes, SageMaker domain)."
  value       = local.subnet_ids
}

output "ray_subnet_id" {
  description = "First private subnet, for configs that take a single subnet (conf/cluster/ec2.yaml subnet_id)."
  value       = local.subnet_ids[0]
}

output "ray_cluster_name" {
  description = "Ray cluster_name the head's autoscaler permissions are scoped to (conf/cluster/ec2.yaml cluster_name)."
  value       = var.ray_cluster_name
}

output "sagemaker_job_name_prefix" {
  description = "Prefix SageMaker job and pipeline names must start with for the execution role to manage them (conf/cluster/sagemaker.yaml job_name_prefix)."
  value       = local.prefix
}

output "ray_ports" {
  description = "Fixed Ray ports the security group opens; Ray must be started with them."
  value       = module.network.ray_ports
}

output "data_bucket" {
  description = "Name of the data/artifacts bucket."
  value       = module.data_bucket.bucket_name
}

output "mlflow_bucket" {
  description = "Name of the MLflow artifacts bucket."
  value       = module.mlflow_bucket.bucket_name
}

output "s3_output_uri" {
  description = "Default output location of pipeline runs (conf/cluster/sagemaker.yaml s3_output)."
  value       = "s3://${module.data_bucket.bucket_name}/outputs"
}

output "code_s3_uri" {
  description = "Where kon_ray/ and conf/ are uploaded for the Code Editor space."
  value       = module.code.s3_uri
}

output "ecr_repository_url" {
  description = "ECR repository URL; images are tagged <git sha> and main-<short sha> (conf/cluster/*.yaml image = <url>:<sha>)."
  value       = module.ecr.repository_url
}

output "mlflow_tracking_server_arn" {
  description = "ARN of the MLflow tracking server (MLFLOW_TRACKING_URI with the sagemaker-mlflow plugin)."
  value       = module.mlflow.tracking_server_arn
}

output "mlflow_tracking_server_url" {
  description = "URL of the MLflow UI."
  value       = module.mlflow.tracking_server_url
}

output "kms_key_arn" {
  description = "KMS key encrypting the environment's data."
  value       = module.kms.key_arn
}

output "sagemaker_domain_id" {
  description = "ID of the SageMaker domain."
  value       = module.studio.domain_id
}

output "code_editor_space_name" {
  description = "Name of the Code Editor space."
  value       = module.studio.space_name
}

output "ray_token_secret_arn" {
  description = "Secrets Manager ARN of the Ray authentication token (RAY_AUTH_TOKEN)."
  value       = module.ray_token.secret_arn
}

output "ray_token_readers" {
  description = "Principals the Ray token secret admits (Ray head, workers, SageMaker execution role, submitters) and the roles given its read policy."
  value       = module.ray_token.readers
}

output "schedule_group_name" {
  description = "EventBridge Scheduler group of the scheduled runs."
  value       = module.schedules.schedule_group_name
}

output "pipeline_schedule_names" {
  description = "Monthly pipeline schedules, by dataset."
  value       = module.schedules.pipeline_schedule_names
}

output "drift_schedule_names" {
  description = "Drift-check schedules, by dataset."
  value       = module.schedules.drift_schedule_names
}

output "ci_plan_role_arn" {
  description = "GitHub Actions plan role (variable AWS_PLAN_ROLE_ARN of environment <env>-plan)."
  value       = module.ci.plan_role_arn
}

output "ci_apply_role_arn" {
  description = "GitHub Actions apply role (variable AWS_APPLY_ROLE_ARN of environment <env>)."
  value       = module.ci.apply_role_arn
}

output "ci_image_role_arn" {
  description = "GitHub Actions image role (variable AWS_IMAGE_ROLE_ARN of environment <env>)."
  value       = module.ci.image_role_arn
}

output "ecr_repository_arn" {
  description = "ARN of the environment's ECR repository."
  value       = module.ecr.repository_arn
}
