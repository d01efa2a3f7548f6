output "tracking_server_arn" {
  description = "ARN of the tracking server (MLFLOW_TRACKING_URI for the sagemaker-mlflow plugin)."
  value       = aws_sagemaker_mlflow_tracking_server.this.arn
}

output "tracking_server_url" {
  description = "URL of the MLflow UI."
  value       = aws_sagemaker_mlflow_tracking_server.this.tracking_server_url
}
