data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name

  bucket_arns = [var.data_bucket_arn, var.mlflow_bucket_arn]
  object_arns = [for b in local.bucket_arns : "${b}/*"]

  ec2_arn_prefix = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
  sm_arn_prefix  = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"

  # MLflow client calls a SageMaker managed MLflow tracking server makes on
  # behalf of the pipeline (tracking + model registry, no deletes).
  mlflow_client_actions = [
    "sagemaker-mlflow:AccessUI",
    "sagemaker-mlflow:CreateExperiment",
    "sagemaker-mlflow:GetExperiment",
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:SearchExperiments",
    "sagemaker-mlflow:UpdateExperiment",
    "sagemaker-mlflow:SetExperimentTag",
    "sagemaker-mlflow:CreateRun",
    "sagemaker-mlflow:GetRun",
    "sagemaker-mlflow:UpdateRun",
    "sagemaker-mlflow:SearchRuns",
    "sagemaker-mlflow:LogMetric",
    "sagemaker-mlflow:LogParam",
    "sagemaker-mlflow:LogBatch",
    "sagemaker-mlflow:LogInputs",
    "sagemaker-mlflow:LogOutputs",
    "sagemaker-mlflow:LogModel",
    "sagemaker-mlflow:SetTag",
    "sagemaker-mlflow:GetMetricHistory",
    "sagemaker-mlflow:ListArtifacts",
    "sagemaker-mlflow:CreateRegisteredModel",
    "sagemaker-mlflow:GetRegisteredModel",
    "sagemaker-mlflow:UpdateRegisteredModel",
    "sagemaker-mlflow:SearchRegisteredModels",
    "sagemaker-mlflow:SetRegisteredModelTag",
    "sagemaker-mlflow:SetRegisteredModelAlias",
    "sagemaker-mlflow:GetModelVersionByAlias",
    "sagemaker-mlflow:GetLatestModelVersions",
    "sagemaker-mlflow:CreateModelVersion",
    "sagemaker-mlflow:GetModelVersion",
    "sagemaker-mlflow:UpdateModelVersion",
    "sagemaker-mlflow:SearchModelVersions",
    "sagemaker-mlflow:SetModelVersionTag",
    "sagemaker-mlflow:GetDownloadURIForModelVersionArtifacts",
    "sagemaker-mlflow:TransitionModelVersionStage",
  ]
}

# =================================================== shared workload access
# Data plane shared by every kon_ray workload (SageMaker jobs/space, Ray
# nodes): the project's two buckets, its KMS key, pulling its image, and the
# tracking server. Nothing else.
data "aws_iam_policy_document" "workload" {
  statement {
    sid       = "ListProjectBuckets"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = local.bucket_arns
  }

  statement {
    sid    = "ReadWriteProjectObjects"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = local.object_arns
  }

  statement {
    sid       = "UseProjectKmsKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  # ecr:GetAuthorizationToken is account-level: AWS does not support
  # resource-level permissions for it, so its Resource must be "*". It only
  # returns a registry login token; every image read below is scoped.
  statement {
    sid       = "EcrLogin"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid    = "PullProjectImage"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "UseProjectTrackingServer"
    effect    = "Allow"
    actions   = concat(local.mlflow_client_actions, ["sagemaker:DescribeMlflowTrackingServer"])
    resources = [var.mlflow_tracking_server_arn]
  }
}

# ======================================================= SageMaker execution
data "aws_iam_policy_document" "sagemaker_trust" {
  statement {
    sid     = "SageMaker"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }

    # Confused-deputy protection: only on behalf of this account.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sagemaker_execution" {
  name                 = "${var.name_prefix}-sagemaker-execution"
  description          = "kon_ray SageMaker jobs (launched or scheduled) and Code Editor space"
  assume_role_policy   = data.aws_iam_policy_document.sagemaker_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "sagemaker_execution" {
  source_policy_documents = [data.aws_iam_policy_document.workload.json]

  statement {
    sid    = "ManageProjectJobs"
    effect = "Allow"
    actions = [
      "sagemaker:CreateTrainingJob",
      "sagemaker:DescribeTrainingJob",
      "sagemaker:StopTrainingJob",
      "sagemaker:CreateProcessingJob",
      "sagemaker:DescribeProcessingJob",
      "sagemaker:StopProcessingJob",
      "sagemaker:AddTags",
    ]
    resources = [
      "${local.sm_arn_prefix}:training-job/${var.name_prefix}-*",
      "${local.sm_arn_prefix}:processing-job/${var.name_prefix}-*",
    ]
  }

  statement {
    sid    = "WriteSageMakerLogs"
    effect = "Allow"
    # The log groups are managed by Terraform (retention, KMS): no CreateLogGroup.
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
      "logs:GetLogEvents",
    ]
    resources = [
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/*",
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/*:log-stream:*",
    ]
  }

  # The Code Editor space's EBS volume is encrypted with the project key:
  # SageMaker creates a grant for the volume on behalf of this role.
  statement {
    sid       = "EncryptStudioVolumes"
    effect    = "Allow"
    actions   = ["kms:CreateGrant"]
    resources = [var.kms_key_arn]

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  # Jobs launched from the Code Editor space run with this same role.
  statement {
    sid       = "PassSelfToSageMakerOnly"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker_execution.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "sagemaker_execution" {
  name   = "kon-ray-least-privilege"
  role   = aws_iam_role.sagemaker_execution.id
  policy = data.aws_iam_policy_document.sagemaker_execution.json
}

# ===================================================== MLflow tracking server
data "aws_iam_policy_document" "mlflow_trust" {
  statement {
    sid     = "SageMakerMlflow"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "mlflow_server" {
  name               = "${var.name_prefix}-mlflow-server"
  description        = "Role assumed by the kon_ray SageMaker managed MLflow tracking server"
  assume_role_policy = data.aws_iam_policy_document.mlflow_trust.json
}

data "aws_iam_policy_document" "mlflow_server" {
  statement {
    sid       = "ListArtifactBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.mlflow_bucket_arn]
  }

  statement {
    sid    = "ReadWriteArtifacts"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${var.mlflow_bucket_arn}/*"]
  }

  statement {
    sid       = "UseProjectKmsKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  # Automatic model registration mirrors MLflow registered models into the
  # SageMaker Model Registry.
  statement {
    sid    = "AutomaticModelRegistration"
    effect = "Allow"
    actions = [
      "sagemaker:AddTags",
      "sagemaker:CreateModelPackageGroup",
      "sagemaker:DescribeModelPackageGroup",
      "sagemaker:CreateModelPackage",
      "sagemaker:UpdateModelPackage",
    ]
    resources = [
      "${local.sm_arn_prefix}:model-package-group/*",
      "${local.sm_arn_prefix}:model-package/*",
    ]
  }
}

resource "aws_iam_role_policy" "mlflow_server" {
  name   = "kon-ray-least-privilege"
  role   = aws_iam_role.mlflow_server.id
  policy = data.aws_iam_policy_document.mlflow_server.json
}

# ============================================================ EC2 Ray nodes
data "aws_iam_policy_document" "ec2_trust" {
  statement {
    sid     = "EC2"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# Worker nodes: data plane only.
resource "aws_iam_role" "ray_node" {
  name               = "${var.name_prefix}-ray-node"
  description        = "kon_ray EC2 Ray worker nodes"
  assume_role_policy = data.aws_iam_policy_document.ec2_trust.json
}

resource "aws_iam_role_policy" "ray_node" {
  name   = "kon-ray-least-privilege"
  role   = aws_iam_role.ray_node.id
  policy = data.aws_iam_policy_document.workload.json
}

resource "aws_iam_instance_profile" "ray_node" {
  name = "${var.name_prefix}-ray-node"
  role = aws_iam_role.ray_node.name
}

# Head node: data plane + what the Ray autoscaler needs to launch and stop the
# workers of THIS cluster (instances tagged ray-cluster-name = cluster name),
# instead of Ray's default AmazonEC2FullAccess/AmazonS3FullAccess role.
resource "aws_iam_role" "ray_head" {
  name               = "${var.name_prefix}-ray-head"
  description        = "kon_ray EC2 Ray head node (runs the Ray autoscaler)"
  assume_role_policy = data.aws_iam_policy_document.ec2_trust.json
}

data "aws_iam_policy_document" "ray_autoscaler" {
  source_policy_documents = [data.aws_iam_policy_document.workload.json]

  # Describe* calls do not support resource-level permissions.
  statement {
    sid    = "DescribeEc2"
    effect = "Allow"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceStatus",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeImages",
      "ec2:DescribeKeyPairs",
      "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeAvailabilityZones",
    ]
    resources = ["*"]
  }

  # New instances/volumes/ENIs (and spot requests, for spot workers) must
  # carry this cluster's tag.
  statement {
    sid     = "RunTaggedClusterInstances"
    effect  = "Allow"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.ec2_arn_prefix}:instance/*",
      "${local.ec2_arn_prefix}:volume/*",
      "${local.ec2_arn_prefix}:network-interface/*",
      "${local.ec2_arn_prefix}:spot-instances-request/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/ray-cluster-name"
      values   = [var.ray_cluster_name]
    }
  }

  # ...launched only into the given subnets, with the Ray security group.
  statement {
    sid     = "RunInstancesWithApprovedNetworkAndImages"
    effect  = "Allow"
    actions = ["ec2:RunInstances"]
    resources = concat(
      [for s in var.ray_subnet_ids : "${local.ec2_arn_prefix}:subnet/${s}"],
      [
        var.ray_security_group_arn,
        "${local.ec2_arn_prefix}:key-pair/*",
        "arn:${local.partition}:ec2:${local.region}::image/*",
      ],
    )
  }

  statement {
    sid     = "TagOnLaunch"
    effect  = "Allow"
    actions = ["ec2:CreateTags"]
    resources = [
      "${local.ec2_arn_prefix}:instance/*",
      "${local.ec2_arn_prefix}:volume/*",
      "${local.ec2_arn_prefix}:network-interface/*",
      "${local.ec2_arn_prefix}:spot-instances-request/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  # Node root volumes are encrypted with the project key (cluster/ec2.yaml
  # KmsKeyId): EC2 creates a grant for the volume and a data key on behalf of
  # the role that launches it. The key policy delegates to IAM in this account
  # (modules/kms_key), so this statement is all that is needed.
  statement {
    sid       = "EncryptLaunchedVolumes"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "GrantKeyToLaunchedVolumes"
    effect    = "Allow"
    actions   = ["kms:CreateGrant"]
    resources = [var.kms_key_arn]

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  statement {
    sid    = "ManageClusterInstances"
    effect = "Allow"
    actions = [
      "ec2:CreateTags",
      "ec2:StartInstances",
      "ec2:StopInstances",
      "ec2:TerminateInstances",
    ]
    resources = ["${local.ec2_arn_prefix}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/ray-cluster-name"
      values   = [var.ray_cluster_name]
    }
  }

  statement {
    sid       = "PassWorkerRoleToEc2Only"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.ray_node.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "ray_head" {
  name   = "kon-ray-least-privilege"
  role   = aws_iam_role.ray_head.id
  policy = data.aws_iam_policy_document.ray_autoscaler.json
}

resource "aws_iam_instance_profile" "ray_head" {
  name = "${var.name_prefix}-ray-head"
  role = aws_iam_role.ray_head.name
}
