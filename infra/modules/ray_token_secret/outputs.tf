output "secret_arn" {
  description = "ARN of the Ray token secret (grant submitters GetSecretValue on it)."
  value       = aws_secretsmanager_secret.this.arn
}

output "secret_name" {
  description = "Name of the Ray token secret."
  value       = aws_secretsmanager_secret.this.name
}
