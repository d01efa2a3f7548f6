locals {
  # Intra-cluster Ray ports. Ray picks several of these at random unless told
  # otherwise, so cluster/ec2.yaml must start Ray with the matching flags
  # (see infra/README.md): --port, --object-manager-port, --node-manager-port,
  # --dashboard-agent-grpc-port, --runtime-env-agent-port,
  # --metrics-export-port, --dashboard-agent-listen-port,
  # --ray-client-server-port, --min-worker-port/--max-worker-port.
  # Every one of them is opened ONLY to members of the Ray security group.
  ray_intra_cluster_ports = {
    gcs                  = { from = 6379, to = 6379, description = "Ray GCS server" }
    object_manager       = { from = 8076, to = 8076, description = "Ray object manager" }
    node_manager         = { from = 8077, to = 8077, description = "Ray node manager (raylet)" }
    dashboard_agent_grpc = { from = 8078, to = 8078, description = "Ray dashboard agent gRPC" }
    runtime_env_agent    = { from = 8079, to = 8079, description = "Ray runtime env agent" }
    metrics_export       = { from = 8080, to = 8080, description = "Ray metrics export (Prometheus)" }
    client_server        = { from = 10001, to = 10001, description = "Ray client server" }
    worker_ports         = { from = 10002, to = 19999, description = "Ray worker processes" }
    dashboard_agent_http = { from = 52365, to = 52365, description = "Ray dashboard agent HTTP" }
  }

  dashboard_port = 8265
}

# ---------------------------------------------------------------- Ray cluster
resource "aws_security_group" "ray" {
  #checkov:skip=CKV2_AWS_5:Attached at launch time by the Ray autoscaler (cluster/ec2.yaml SecurityGroupIds = output ray_security_group_id), not by a Terraform-managed instance.
  name        = "${var.name_prefix}-ray"
  description = "kon_ray EC2 Ray cluster nodes: Ray ports only between members; dashboard/jobs API only from the configured CIDRs"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${var.name_prefix}-ray"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ray_intra_cluster" {
  for_each = local.ray_intra_cluster_ports

  security_group_id            = aws_security_group.ray.id
  referenced_security_group_id = aws_security_group.ray.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  description                  = "${each.value.description} (cluster members only)"
}

# The Ray autoscaler on the head sets workers up over SSH (docker pull,
# ray start), so SSH is needed inside the cluster, from the group itself only.
resource "aws_vpc_security_group_ingress_rule" "ssh_from_cluster" {
  #checkov:skip=CKV_AWS_24:False positive: the source is the Ray security group itself (referenced_security_group_id), not 0.0.0.0/0; checkov reads a rule without cidr_ipv4 as open to the world.
  security_group_id            = aws_security_group.ray.id
  referenced_security_group_id = aws_security_group.ray.id
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  description                  = "SSH from the Ray head (autoscaler node setup; cluster members only)"
}

# The dashboard/Jobs API (8265) is closed by default: kon_ray reaches it
# through an SSH tunnel to the head (cluster.port_forward=true, over the SSH
# rule below). A team that wants direct access (cluster.port_forward=false)
# sets dashboard_ingress_enabled = true, and 8265 opens to
# dashboard_ingress_cidrs only.
resource "aws_vpc_security_group_ingress_rule" "ray_dashboard" {
  for_each = var.dashboard_ingress_enabled ? toset(var.dashboard_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.ray.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = local.dashboard_port
  to_port           = local.dashboard_port
  description       = "Ray dashboard and Jobs API from an allowed operator network"
}

# The Ray cluster launcher (ray up / ray attach) and kon_ray's dashboard
# tunnel (cluster.port_forward=true) reach the head over SSH. Off by default
# (empty list); set ssh_ingress_cidrs to a VPN/bastion range to use it.
resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = toset(var.ssh_ingress_cidrs)

  security_group_id = aws_security_group.ray.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  description       = "SSH for the Ray cluster launcher from an allowed operator network"
}

resource "aws_vpc_security_group_egress_rule" "ray_intra_cluster" {
  security_group_id            = aws_security_group.ray.id
  referenced_security_group_id = aws_security_group.ray.id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
  description                  = "Ray traffic to other cluster members"
}

resource "aws_vpc_security_group_egress_rule" "ray_https" {
  for_each = toset(var.https_egress_cidrs)

  security_group_id = aws_security_group.ray.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS to AWS APIs (S3, ECR, SageMaker MLflow, EC2) and package mirrors"
}

# ------------------------------------------------- SageMaker Studio (VpcOnly)
resource "aws_security_group" "studio" {
  #checkov:skip=CKV2_AWS_5:Attached to the SageMaker domain, user profile and space (security_groups of the sagemaker_studio module); checkov does not model that attachment.
  name        = "${var.name_prefix}-studio"
  description = "kon_ray SageMaker Studio apps (Code Editor space) in VpcOnly mode"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${var.name_prefix}-studio"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "studio_apps" {
  security_group_id            = aws_security_group.studio.id
  referenced_security_group_id = aws_security_group.studio.id
  ip_protocol                  = "tcp"
  from_port                    = 8192
  to_port                      = 65535
  description                  = "Studio app-to-app traffic (required by SageMaker in VpcOnly mode)"
}

resource "aws_vpc_security_group_egress_rule" "studio_apps" {
  security_group_id            = aws_security_group.studio.id
  referenced_security_group_id = aws_security_group.studio.id
  ip_protocol                  = "tcp"
  from_port                    = 8192
  to_port                      = 65535
  description                  = "Studio app-to-app traffic (required by SageMaker in VpcOnly mode)"
}

resource "aws_vpc_security_group_egress_rule" "studio_https" {
  for_each = toset(var.https_egress_cidrs)

  security_group_id = aws_security_group.studio.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS to AWS APIs through VPC endpoints or NAT"
}
