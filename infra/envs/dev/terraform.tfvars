# dev: cheapest settings, EFS home deleted with the domain.
aws_region  = "eu-west-1"
environment = "dev"
cost_center = "ml-platform-dev"
owner       = "ml-platform"

vpc_name                = "kon-ray-dev"
dashboard_ingress_cidrs = ["10.10.0.0/16"] # dev VPC + client VPN pool
ssh_ingress_cidrs       = ["10.10.250.0/24"]
ray_cluster_name        = "kon-ray-dev"

mlflow_server_size                = "Small"
home_efs_retention                = "Delete"
noncurrent_version_retention_days = 30
access_log_retention_days         = 90
