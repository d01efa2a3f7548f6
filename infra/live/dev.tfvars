# dev: cheapest settings, EFS home deleted with the domain.
aws_region  = "eu-west-1"
environment = "dev"
cost_center = "ml-platform-dev"
owner       = "ml-platform"

vpc_name = "kon-ray-dev"
# 8265 (dashboard/Jobs API) stays closed: kon_ray tunnels over SSH (cluster.port_forward=true).
# For direct access set dashboard_ingress_enabled = true; it then opens to dashboard_ingress_cidrs.
dashboard_ingress_enabled = false
dashboard_ingress_cidrs   = ["10.10.0.0/16"] # dev VPC + client VPN pool
ssh_ingress_cidrs         = ["10.10.250.0/24"]
ray_cluster_name          = "kon-ray-dev"

mlflow_server_size                = "Small"
home_efs_retention                = "Delete"
noncurrent_version_retention_days = 30
access_log_retention_days         = 90

# Scheduled runs: a monthly pipeline run and a drift check per dataset.
# pipeline_image_uri (the digest the image workflow pushed) is set once the
# first image exists; until then no schedule is created.
# pipeline_image_uri = "<account>.dkr.ecr.eu-west-1.amazonaws.com/kon-ray-dev@sha256:<digest>"
scheduled_datasets = {
  POLA = { input_prefix = "datasets/POLA/" }
  CLIE = { input_prefix = "datasets/CLIE/" }
  HFAC = { input_prefix = "datasets/HFAC/" }
}
log_retention_days = 365

# github_owner / github_repository, state_bucket_name and state_kms_key_arn
# come from the environment: TF_VAR_github_owner, TF_VAR_github_repository,
# TF_VAR_state_bucket_name, TF_VAR_state_kms_key_arn (set by the terraform
# workflow from the GitHub context and repository variables).

# prod's image role pulls the tested image from this repository to promote it.
# image_pull_principal_arns = ["arn:aws:iam::<prod account>:role/kon-ray-prod-ci-image"]
