output "secret_arn" {
  description = "ARN of the Ray token secret (grant submitters GetSecretValue on it)."
  value       = aws_secretsmanager_secret.this.arn
}

output "secret_name" {
  description = "Name of the Ray token secret."
  value       = aws_secretsmanager_secret.this.name
}

output "readers" {
  description = "Who may read the token: the principal ARNs the resource policy admits, and the roles given the read policy (by label)."
  value = {
    principal_arns = local.reader_arns
    role_names     = { for k, p in aws_iam_role_policy.read : k => p.role }
  }
}
