# staging: mirrors prod sizing, shorter retention.
aws_region  = "eu-west-1"
environment = "staging"
cost_center = "ml-platform-staging"
owner       = "ml-platform"

vpc_name                = "kon-ray-staging"
dashboard_ingress_cidrs = ["10.20.250.0/24"] # client VPN pool only
ssh_ingress_cidrs       = ["10.20.250.0/24"]
ray_cluster_name        = "kon-ray-staging"

mlflow_server_size                = "Small"
home_efs_retention                = "Retain"
noncurrent_version_retention_days = 90
access_log_retention_days         = 365
