output "oidc_provider_arn" {
  description = "ARN of the GitHub Actions OIDC provider of this account."
  value       = local.oidc_provider_arn
}

output "plan_role_arn" {
  description = "Read-only plan role (GitHub variable AWS_PLAN_ROLE_ARN of the <env>-plan environment)."
  value       = aws_iam_role.plan.arn
}

output "apply_role_arn" {
  description = "Apply role (GitHub variable AWS_APPLY_ROLE_ARN of the <env> environment)."
  value       = aws_iam_role.apply.arn
}

output "image_role_arn" {
  description = "Image push role (GitHub variable AWS_IMAGE_ROLE_ARN of the <env> environment)."
  value       = aws_iam_role.image.arn
}

output "trusted_subjects" {
  description = "The token sub claim each role trusts."
  value       = local.subjects
}
