output "state_bucket" {
  description = "Name of the Terraform state bucket (backend-config bucket=...)."
  value       = module.state_bucket.bucket_name
}

output "state_kms_key_arn" {
  description = "KMS key encrypting the state (backend-config kms_key_id=...)."
  value       = module.kms.key_arn
}

output "backend_config" {
  description = "Arguments for `terraform init` in infra/live (with -backend-config=<env>.s3.tfbackend)."
  value       = "-backend-config=bucket=${module.state_bucket.bucket_name} -backend-config=kms_key_id=${module.kms.key_arn}"
}
