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
  description = "IPv4 CIDRs (VPN, bastion, CI runner range) allowed to reach the Ray dashboard and Jobs API on port 8265 when dashboard_ingress_enabled is true. Private (RFC 1918), /16 or longer."
  default     = []

  validation {
    # RFC 1918 only (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16), prefix /16 or longer: the
    # network address must lie in one of the three blocks, and a /16+ network inside one of
    # them lies entirely in it. ["0.0.0.0/1", "128.0.0.0/1"], public ranges and IPv6 fail.
    condition     = alltrue([for c in var.dashboard_ingress_cidrs : try(tonumber(split("/", c)[1]) >= 16 && can(regex("^(10\\.|172\\.(1[6-9]|2[0-9]|3[01])\\.|192\\.168\\.)", cidrhost(c, 0))), false)])
    error_message = "dashboard_ingress_cidrs must be private IPv4 CIDRs (RFC 1918) with a prefix of /16 or longer."
  }
}

variable "dashboard_ingress_enabled" {
  type        = bool
  description = "Open the Ray dashboard/Jobs API (8265) to dashboard_ingress_cidrs. Off by default: kon_ray reaches it through an SSH tunnel (cluster.port_forward=true); turn on only for direct access (cluster.port_forward=false)."
  default     = false

  validation {
    condition     = !var.dashboard_ingress_enabled || length(var.dashboard_ingress_cidrs) > 0
    error_message = "dashboard_ingress_enabled needs at least one CIDR in dashboard_ingress_cidrs."
  }
}

variable "ssh_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to SSH into Ray nodes (needed by `ray up`). Empty disables SSH ingress. Private (RFC 1918), /16 or longer."
  default     = []

  validation {
    # RFC 1918 only (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16), prefix /16 or longer: the
    # network address must lie in one of the three blocks, and a /16+ network inside one of
    # them lies entirely in it. ["0.0.0.0/1", "128.0.0.0/1"], public ranges and IPv6 fail.
    condition     = alltrue([for c in var.ssh_ingress_cidrs : try(tonumber(split("/", c)[1]) >= 16 && can(regex("^(10\\.|172\\.(1[6-9]|2[0-9]|3[01])\\.|192\\.168\\.)", cidrhost(c, 0))), false)])
    error_message = "ssh_ingress_cidrs must be private IPv4 CIDRs (RFC 1918) with a prefix of /16 or longer."
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
