output "schedule_group_name" {
  description = "EventBridge Scheduler group holding the schedules."
  value       = aws_scheduler_schedule_group.this.name
}

output "pipeline_schedule_names" {
  description = "Monthly pipeline schedules, by dataset."
  value       = { for k, s in aws_scheduler_schedule.pipeline : k => s.name }
}

output "drift_schedule_names" {
  description = "Drift-check schedules, by dataset."
  value       = { for k, s in aws_scheduler_schedule.drift : k => s.name }
}

output "scheduler_role_arn" {
  description = "Role the schedules assume to start the jobs."
  value       = aws_iam_role.scheduler.arn
}
