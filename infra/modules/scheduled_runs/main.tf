# Scheduled runs, on EventBridge Scheduler universal targets (the AWS SDK call
# itself, no Lambda, no SageMaker Pipeline):
#
#   pipeline-<DATASET>: monthly, sagemaker:CreateTrainingJob with the request
#     `python -m kon_ray.run +dataset=<DATASET> cluster=sagemaker` sends
#     (kon_ray/cluster/sagemaker.py): the project image, whose entrypoint runs
#     `train` = the Ray bootstrap of kon_ray/cluster/sagemaker_entry.py, the
#     "data" channel, and the run's Hydra overrides as the kon_overrides
#     hyperparameter (JSON list), rewritten as the launcher rewrites them.
#   drift-<DATASET>: frequent, sagemaker:CreateProcessingJob running
#     `python -m kon_ray.drift reference_summary=... current=... output=...` in
#     the same image on the newest batch.
#
# Job names end with <aws.scheduler.execution-id>, which the scheduler
# replaces by a unique id on each invocation: SageMaker job names are unique.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  sm_prefix  = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"

  execution_id = "<aws.scheduler.execution-id>"
  channel      = "data"
  channel_dir  = "/opt/ml/input/data/data"
  s3_output    = "s3://${var.data_bucket}/outputs"

  # No schedule before an image exists (first apply of an empty account).
  datasets = var.image_uri == null ? {} : var.datasets

  slug = { for k, _ in local.datasets : k => lower(replace(k, "_", "-")) }

  pipeline_job_prefix = { for k, _ in local.datasets : k => "${var.name_prefix}-${local.slug[k]}" }
  drift_job_prefix    = { for k, _ in local.datasets : k => "${var.name_prefix}-drift-${local.slug[k]}" }

  pipeline_request = {
    for k, d in local.datasets : k => {
      TrainingJobName = "${local.pipeline_job_prefix[k]}-${local.execution_id}"
      AlgorithmSpecification = {
        TrainingImage     = var.image_uri
        TrainingInputMode = "File"
      }
      RoleArn = var.execution_role_arn
      HyperParameters = {
        # The overrides kon_ray.cluster.sagemaker.container_overrides makes of
        # `+dataset=<k> cluster=sagemaker <overrides>`.
        kon_overrides = jsonencode(concat(
          ["+dataset=${k}", "cluster=sagemaker"],
          d.overrides,
          [
            "cluster.kind=local",
            "cluster.address=auto",
            "dataset.path='${local.channel_dir}'",
            "output_dir='${local.s3_output}/${local.pipeline_job_prefix[k]}-${local.execution_id}/run'",
            "cluster.storage_path='${local.s3_output}/${local.pipeline_job_prefix[k]}-${local.execution_id}/run/ray_train'",
            "tracking.uri='${var.tracking_uri}'",
          ],
        ))
      }
      InputDataConfig = [{
        ChannelName = local.channel
        DataSource = {
          S3DataSource = {
            S3DataType             = "S3Prefix"
            S3Uri                  = "s3://${var.data_bucket}/${d.input_prefix}"
            S3DataDistributionType = "FullyReplicated"
          }
        }
        InputMode = "File"
      }]
      OutputDataConfig = {
        S3OutputPath = "${local.s3_output}/${local.pipeline_job_prefix[k]}-${local.execution_id}/sagemaker"
        KmsKeyId     = var.kms_key_arn
      }
      ResourceConfig = {
        InstanceType   = d.instance_type
        InstanceCount  = d.instance_count
        VolumeSizeInGB = d.volume_size_gb
        VolumeKmsKeyId = var.kms_key_arn
      }
      StoppingCondition         = { MaxRuntimeInSeconds = d.max_runtime_s }
      EnableManagedSpotTraining = false
      Tags = [
        { Key = "project", Value = "kon_ray" },
        { Key = "dataset", Value = k },
        { Key = "schedule", Value = "pipeline" },
      ]
    }
  }

  drift_datasets = { for k, d in local.datasets : k => d if d.drift_enabled }

  drift_request = {
    for k, d in local.drift_datasets : k => {
      ProcessingJobName = "${local.drift_job_prefix[k]}-${local.execution_id}"
      RoleArn           = var.execution_role_arn
      AppSpecification = {
        ImageUri            = var.image_uri
        ContainerEntrypoint = ["python", "-m", "kon_ray.drift"]
        ContainerArguments = [
          "reference_summary=s3://${var.data_bucket}/${coalesce(d.reference_prefix, "reference/${k}/")}reference_summary.json",
          "current=s3://${var.data_bucket}/${coalesce(d.batches_prefix, "batches/${k}/incoming/")}",
          "output=s3://${var.data_bucket}/drift/${k}/${local.drift_job_prefix[k]}-${local.execution_id}",
          # one MLflow run per check, all checks of a reference in one experiment: PSI per feature over time
          "tracking.uri='${var.tracking_uri}'",
        ]
      }
      ProcessingResources = {
        ClusterConfig = {
          InstanceCount  = 1
          InstanceType   = var.drift_instance_type
          VolumeSizeInGB = 30
          VolumeKmsKeyId = var.kms_key_arn
        }
      }
      StoppingCondition = { MaxRuntimeInSeconds = var.drift_max_runtime_s }
      Tags = [
        { Key = "project", Value = "kon_ray" },
        { Key = "dataset", Value = k },
        { Key = "schedule", Value = "drift" },
      ]
    }
  }
}

resource "aws_scheduler_schedule_group" "this" {
  name = var.name_prefix
}

resource "aws_scheduler_schedule" "pipeline" {
  for_each = local.pipeline_request

  name                         = "pipeline-${local.slug[each.key]}"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "kon_ray: monthly pipeline run of ${each.key} as a SageMaker-hosted Ray job"
  schedule_expression          = var.pipeline_schedule
  schedule_expression_timezone = var.schedule_timezone
  state                        = var.enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode                      = "FLEXIBLE"
    maximum_window_in_minutes = 60
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:sagemaker:createTrainingJob"
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode(each.value)

    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 3
    }
  }
}

resource "aws_scheduler_schedule" "drift" {
  for_each = local.drift_request

  name                         = "drift-${local.slug[each.key]}"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "kon_ray: drift check of ${each.key}'s newest batch against its reference_summary.json"
  schedule_expression          = var.drift_schedule
  schedule_expression_timezone = var.schedule_timezone
  state                        = var.enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode                      = "FLEXIBLE"
    maximum_window_in_minutes = 15
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:sagemaker:createProcessingJob"
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode(each.value)

    retry_policy {
      maximum_event_age_in_seconds = 900
      maximum_retry_attempts       = 2
    }
  }
}

# ------------------------------------------------------------ scheduler role
data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    sid     = "EventBridgeSchedulerOfThisGroup"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    # Confused-deputy protection: only schedules of this account's group.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:scheduler:${local.region}:${local.account_id}:schedule/${var.name_prefix}/*"]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name                 = "${var.name_prefix}-scheduler"
  description          = "kon_ray: EventBridge Scheduler starts the monthly pipeline jobs and the drift checks"
  assume_role_policy   = data.aws_iam_policy_document.scheduler_trust.json
  max_session_duration = 3600
}

# Exactly what the schedules call: create the named jobs (with their tags),
# pass the execution role to SageMaker, decrypt the schedules' payloads.
data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "StartScheduledPipelineRuns"
    effect    = "Allow"
    actions   = ["sagemaker:CreateTrainingJob", "sagemaker:AddTags"]
    resources = length(local.datasets) > 0 ? [for k, _ in local.datasets : "${local.sm_prefix}:training-job/${local.pipeline_job_prefix[k]}-*"] : ["${local.sm_prefix}:training-job/${var.name_prefix}-none"]
  }

  statement {
    sid       = "StartScheduledDriftChecks"
    effect    = "Allow"
    actions   = ["sagemaker:CreateProcessingJob", "sagemaker:AddTags"]
    resources = length(local.drift_datasets) > 0 ? [for k, _ in local.drift_datasets : "${local.sm_prefix}:processing-job/${local.drift_job_prefix[k]}-*"] : ["${local.sm_prefix}:processing-job/${var.name_prefix}-drift-none"]
  }

  statement {
    sid       = "PassExecutionRoleToSageMakerOnly"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [var.execution_role_arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  statement {
    sid       = "DecryptSchedulePayloads"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "kon-ray-start-scheduled-jobs"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
