output "s3_uri" {
  description = "S3 URI of the uploaded code root (s3://<bucket>/<key_prefix>)."
  value       = "s3://${var.bucket_name}/${var.key_prefix}"
}

output "object_count" {
  description = "Number of files uploaded."
  value       = length(aws_s3_object.this)
}
