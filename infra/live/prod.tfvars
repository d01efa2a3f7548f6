# prod: SSH (`ray up`, dashboard tunnel) only from the bastion subnet, larger
# tracking server, longest retention.
aws_region  = "eu-west-1"
environment = "prod"
cost_center = "ml-platform-prod"
owner       = "ml-platform"

vpc_name = "kon-ray-prod"
# 8265 (dashboard/Jobs API) stays closed: kon_ray tunnels over SSH (cluster.port_forward=true).
# For direct access set dashboard_ingress_enabled = true; it then opens to dashboard_ingress_cidrs.
dashboard_ingress_enabled = false
dashboard_ingress_cidrs   = ["10.30.250.0/28"] # bastion subnet
ssh_ingress_cidrs         = ["10.30.250.0/28"]
ray_cluster_name          = "kon-ray-prod"

mlflow_server_size                = "Medium"
home_efs_retention                = "Retain"
noncurrent_version_retention_days = 365
access_log_retention_days         = 730

# Scheduled runs: a monthly pipeline run and a drift check per dataset.
# pipeline_image_uri (the digest the image workflow pushed) is set once the
# first image exists; until then no schedule is created.
# pipeline_image_uri = "<account>.dkr.ecr.eu-west-1.amazonaws.com/kon-ray-prod@sha256:<digest>"
scheduled_datasets = {
  POLA = { input_prefix = "datasets/POLA/" }
  CLIE = { input_prefix = "datasets/CLIE/" }
  HFAC = { input_prefix = "datasets/HFAC/" }
}
log_retention_days = 731

# github_owner / github_repository, state_bucket_name and state_kms_key_arn
# come from the environment: TF_VAR_github_owner, TF_VAR_github_repository,
# TF_VAR_state_bucket_name, TF_VAR_state_kms_key_arn (set by the terraform
# workflow from the GitHub context and repository variables).

# prod promotes the image dev built and tested, by digest (image workflow):
# its image role pulls from dev's repository, which lets it in (dev.tfvars).
# promote_from_repository_arn = "arn:aws:ecr:eu-west-1:<dev account>:repository/kon-ray-dev"
