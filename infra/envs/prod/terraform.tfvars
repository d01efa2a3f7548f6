# prod: dashboard and `ray up` SSH only from the bastion subnet, larger
# tracking server, longest retention.
aws_region  = "eu-west-1"
environment = "prod"
cost_center = "ml-platform-prod"
owner       = "ml-platform"

vpc_name                = "kon-ray-prod"
dashboard_ingress_cidrs = ["10.30.250.0/28"] # bastion subnet
ssh_ingress_cidrs       = ["10.30.250.0/28"]
ray_cluster_name        = "kon-ray-prod"

mlflow_server_size                = "Medium"
home_efs_retention                = "Retain"
noncurrent_version_retention_days = 365
access_log_retention_days         = 730
