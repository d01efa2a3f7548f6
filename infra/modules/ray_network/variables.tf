variable "name_prefix" {
  type        = string
  description = "Prefix of the security group names (e.g. kon-ray-dev)."
}

variable "vpc_id" {
  type        = string
  description = "ID of the VPC hosting the Ray cluster and the SageMaker domain."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "dashboard_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs (VPN, bastion, CI runner range) allowed to reach the Ray dashboard and Jobs API on port 8265. Never 0.0.0.0/0."
  default     = []

  validation {
    condition     = alltrue([for c in var.dashboard_ingress_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "dashboard_ingress_cidrs must be valid IPv4 CIDRs and must not be open to the world (/0)."
  }
}

variable "ssh_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to SSH into Ray nodes (needed by `ray up`). Empty disables SSH ingress. Never 0.0.0.0/0."
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_ingress_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "ssh_ingress_cidrs must be valid IPv4 CIDRs and must not be open to the world (/0)."
  }
}

variable "https_egress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs the nodes may reach on TCP 443 (AWS APIs via NAT or VPC endpoints). Narrow to the VPC CIDR when only VPC endpoints are used."
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.https_egress_cidrs : can(cidrhost(c, 0))])
    error_message = "https_egress_cidrs must be valid IPv4 CIDRs."
  }
}
