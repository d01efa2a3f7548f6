resource "aws_sagemaker_mlflow_tracking_server" "this" {
  tracking_server_name = var.name
  role_arn             = var.role_arn
  artifact_store_uri   = var.artifact_store_uri
  tracking_server_size = var.size
  mlflow_version       = var.mlflow_version
  # Models registered in MLflow are mirrored into the SageMaker Model Registry.
  automatic_model_registration    = true
  weekly_maintenance_window_start = var.weekly_maintenance_window_start
}
