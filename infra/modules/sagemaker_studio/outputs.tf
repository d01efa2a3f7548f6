output "domain_id" {
  description = "ID of the SageMaker domain."
  value       = aws_sagemaker_domain.this.id
}

output "domain_arn" {
  description = "ARN of the SageMaker domain."
  value       = aws_sagemaker_domain.this.arn
}

output "user_profile_name" {
  description = "Name of the user profile."
  value       = aws_sagemaker_user_profile.this.user_profile_name
}

output "space_name" {
  description = "Name of the Code Editor space."
  value       = aws_sagemaker_space.code_editor.space_name
}
