output "sagemaker_execution_role_arn" {
  description = "ARN of the SageMaker execution role."
  value       = aws_iam_role.sagemaker_execution.arn
}

output "sagemaker_execution_role_name" {
  description = "Name of the SageMaker execution role."
  value       = aws_iam_role.sagemaker_execution.name
}

output "mlflow_server_role_arn" {
  description = "ARN of the role assumed by the MLflow tracking server."
  value       = aws_iam_role.mlflow_server.arn
}

output "ray_node_role_arn" {
  description = "ARN of the Ray worker node role."
  value       = aws_iam_role.ray_node.arn
}

output "ray_node_instance_profile_arn" {
  description = "ARN of the Ray worker node instance profile."
  value       = aws_iam_instance_profile.ray_node.arn
}

output "ray_head_instance_profile_arn" {
  description = "ARN of the Ray head node instance profile (adds scoped autoscaler permissions)."
  value       = aws_iam_instance_profile.ray_head.arn
}

output "ray_head_role_arn" {
  description = "ARN of the Ray head node role."
  value       = aws_iam_role.ray_head.arn
}

output "ray_node_role_name" {
  description = "Name of the Ray worker node role."
  value       = aws_iam_role.ray_node.name
}

output "ray_head_role_name" {
  description = "Name of the Ray head node role."
  value       = aws_iam_role.ray_head.name
}
