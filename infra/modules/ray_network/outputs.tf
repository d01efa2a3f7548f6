output "ray_security_group_id" {
  description = "ID of the Ray cluster security group (cluster/ec2.yaml SecurityGroupIds)."
  value       = aws_security_group.ray.id
}

output "ray_security_group_arn" {
  description = "ARN of the Ray cluster security group."
  value       = aws_security_group.ray.arn
}

output "studio_security_group_id" {
  description = "ID of the SageMaker Studio apps security group."
  value       = aws_security_group.studio.id
}

output "ray_ports" {
  description = "Intra-cluster Ray ports opened by the security group; cluster/ec2.yaml must start Ray with these."
  value       = { for k, v in local.ray_intra_cluster_ports : k => v.from == v.to ? tostring(v.from) : "${v.from}-${v.to}" }
}
