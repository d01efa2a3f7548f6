# GitHub Actions identities of one environment (one AWS account per
# environment): the account's OIDC provider and three roles whose trust pins
# the token's audience and its subject to one GitHub environment of one
# repository, repo:OWNER/REPO:environment:NAME. A token carries that subject
# only in a job bound to that environment, i.e. after GitHub's deployment gate
# (branch policy, required reviewers) let the job start.
#
#   plan  <- environment <env>-plan (dev-plan: pull requests; staging-plan and
#            prod-plan: main only). Read-only: a minimal custom read policy.
#   apply <- environment <env> (main only; prod: required reviewers).
#   image <- environment <env>: push to this environment's ECR repository only.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name

  oidc_host         = "token.actions.githubusercontent.com"
  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : data.aws_iam_openid_connect_provider.github[0].arn

  repo = "${var.github_owner}/${var.github_repository}"
  subjects = {
    plan  = "repo:${local.repo}:environment:${coalesce(var.plan_environment, "${var.environment}-plan")}"
    apply = "repo:${local.repo}:environment:${var.environment}"
    image = "repo:${local.repo}:environment:${var.environment}"
  }

  iam_prefix = "arn:${local.partition}:iam::${local.account_id}"
  sm_prefix  = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"
  log_prefix = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group"

  project_buckets = "arn:${local.partition}:s3:::${var.name_prefix}-*"
  project_roles = [
    "${local.iam_prefix}:role/${var.name_prefix}-*",
    "${local.iam_prefix}:instance-profile/${var.name_prefix}-*",
    "${local.iam_prefix}:oidc-provider/${local.oidc_host}",
  ]
  project_sagemaker = [
    "${local.sm_prefix}:domain/*",
    "${local.sm_prefix}:user-profile/*",
    "${local.sm_prefix}:space/*",
    "${local.sm_prefix}:app/*",
    "${local.sm_prefix}:mlflow-tracking-server/${var.name_prefix}-*",
  ]
  project_logs     = ["${local.log_prefix}:/aws/sagemaker/*"]
  project_secrets  = "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.name_prefix}-*"
  project_schedule = "arn:${local.partition}:scheduler:${local.region}:${local.account_id}"
  project_kms_keys = "arn:${local.partition}:kms:${local.region}:${local.account_id}:key/*"
}

# ------------------------------------------------------------ OIDC provider
resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  # IAM trusts GitHub's certificate through its own root CAs; the list is only
  # kept for API compatibility (GitHub's published intermediate thumbprints).
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]
}

data "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 0 : 1
  url   = "https://${local.oidc_host}"
}

# One trust document per role: this account's GitHub provider, audience
# sts.amazonaws.com, and exactly one subject (no wildcard).
data "aws_iam_policy_document" "trust" {
  for_each = local.subjects

  statement {
    sid     = "GitHubActions${title(each.key)}"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = [each.value]
    }
  }
}

# ---------------------------------------------------------------- plan role
resource "aws_iam_role" "plan" {
  name                 = "${var.name_prefix}-ci-plan"
  description          = "kon_ray ${var.environment}: terraform plan from GitHub Actions (read only)"
  assume_role_policy   = data.aws_iam_policy_document.trust["plan"].json
  max_session_duration = var.max_session_duration
}

# What `terraform plan -lock=false` reads to refresh this stack: metadata of
# the project's resources, the state object, nothing else. No object data
# besides the uploaded code (code/*), no secret values, no write.
data "aws_iam_policy_document" "plan" {
  statement {
    sid       = "ReadState"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${var.state_bucket_arn}/${var.state_key_prefix}*"]
  }

  statement {
    sid       = "ListState"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [var.state_bucket_arn]
  }

  statement {
    sid       = "DecryptState"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [var.state_kms_key_arn]
  }

  statement {
    sid    = "ReadProjectBuckets"
    effect = "Allow"
    actions = [
      "s3:GetAccelerateConfiguration",
      "s3:GetBucketAcl",
      "s3:GetBucketCORS",
      "s3:GetBucketLogging",
      "s3:GetBucketObjectLockConfiguration",
      "s3:GetBucketOwnershipControls",
      "s3:GetBucketPolicy",
      "s3:GetBucketPublicAccessBlock",
      "s3:GetBucketRequestPayment",
      "s3:GetBucketTagging",
      "s3:GetBucketVersioning",
      "s3:GetBucketWebsite",
      "s3:GetEncryptionConfiguration",
      "s3:GetLifecycleConfiguration",
      "s3:GetReplicationConfiguration",
      "s3:ListBucket",
    ]
    resources = [local.project_buckets]
  }

  statement {
    sid       = "ReadUploadedCode"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectTagging"]
    resources = ["arn:${local.partition}:s3:::${var.name_prefix}-data-*/code/*"]
  }

  statement {
    sid    = "ReadProjectIam"
    effect = "Allow"
    actions = [
      "iam:GetInstanceProfile",
      "iam:GetOpenIDConnectProvider",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole",
      "iam:ListRolePolicies",
    ]
    resources = local.project_roles
  }

  statement {
    sid    = "ReadProjectKeys"
    effect = "Allow"
    actions = [
      "kms:DescribeKey",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListResourceTags",
    ]
    resources = [local.project_kms_keys]
  }

  statement {
    sid    = "ReadProjectRepository"
    effect = "Allow"
    actions = [
      "ecr:DescribeRepositories",
      "ecr:GetLifecyclePolicy",
      "ecr:GetRepositoryPolicy",
      "ecr:ListTagsForResource",
    ]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid    = "ReadProjectSageMaker"
    effect = "Allow"
    actions = [
      "sagemaker:DescribeDomain",
      "sagemaker:DescribeMlflowTrackingServer",
      "sagemaker:DescribeSpace",
      "sagemaker:DescribeUserProfile",
      "sagemaker:ListTags",
    ]
    resources = local.project_sagemaker
  }

  statement {
    sid       = "ReadProjectLogGroups"
    effect    = "Allow"
    actions   = ["logs:DescribeLogGroups", "logs:ListTagsForResource", "logs:ListTagsLogGroup"]
    resources = ["${local.log_prefix}:*"]
  }

  statement {
    sid       = "ReadProjectSecretMetadata"
    effect    = "Allow"
    actions   = ["secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy"]
    resources = [local.project_secrets]
  }

  statement {
    sid     = "ReadProjectSchedules"
    effect  = "Allow"
    actions = ["scheduler:GetSchedule", "scheduler:GetScheduleGroup", "scheduler:ListTagsForResource"]
    resources = [
      "${local.project_schedule}:schedule-group/${var.name_prefix}*",
      "${local.project_schedule}:schedule/${var.name_prefix}*/*",
    ]
  }

  statement {
    sid       = "DescribeVpcAttributes"
    effect    = "Allow"
    actions   = ["ec2:DescribeVpcAttribute"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:vpc/*"]
  }

  # Describe* and ListAliases do not support resource-level permissions.
  statement {
    sid    = "DescribeNetworkAndAliases"
    effect = "Allow"
    actions = [
      "ec2:DescribeSecurityGroupRules",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSubnets",
      "ec2:DescribeVpcs",
      "kms:ListAliases",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "plan" {
  name   = "terraform-plan-read-only"
  role   = aws_iam_role.plan.id
  policy = data.aws_iam_policy_document.plan.json
}

# --------------------------------------------------------------- apply role
resource "aws_iam_role" "apply" {
  name                 = "${var.name_prefix}-ci-apply"
  description          = "kon_ray ${var.environment}: terraform apply of a reviewed plan from GitHub Actions"
  assume_role_policy   = data.aws_iam_policy_document.trust["apply"].json
  max_session_duration = var.max_session_duration
}

# Manage this stack's resources, by their name prefix or their Environment tag.
data "aws_iam_policy_document" "apply" {
  source_policy_documents = [data.aws_iam_policy_document.plan.json]

  statement {
    sid       = "WriteState"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.state_bucket_arn}/${var.state_key_prefix}*"]
  }

  statement {
    sid       = "EncryptState"
    effect    = "Allow"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.state_kms_key_arn]
  }

  statement {
    sid = "ManageProjectBuckets"
    actions = [
      "s3:CreateBucket", "s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketLogging",
      "s3:PutBucketOwnershipControls", "s3:PutBucketPolicy", "s3:PutBucketPublicAccessBlock",
      "s3:PutBucketTagging", "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration",
      "s3:PutLifecycleConfiguration",
    ]
    resources = [local.project_buckets]
  }

  statement {
    sid       = "UploadCode"
    actions   = ["s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging"]
    resources = ["arn:${local.partition}:s3:::${var.name_prefix}-data-*/code/*"]
  }

  statement {
    sid = "ManageProjectRoles"
    actions = [
      "iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:CreateOpenIDConnectProvider",
      "iam:CreateRole", "iam:DeleteInstanceProfile", "iam:DeleteOpenIDConnectProvider", "iam:DeleteRole",
      "iam:DeleteRolePolicy", "iam:PassRole", "iam:PutRolePolicy", "iam:RemoveRoleFromInstanceProfile",
      "iam:TagInstanceProfile", "iam:TagOpenIDConnectProvider", "iam:TagRole", "iam:UntagRole",
      "iam:UpdateAssumeRolePolicy", "iam:UpdateOpenIDConnectProviderThumbprint", "iam:UpdateRole",
      "iam:UpdateRoleDescription",
    ]
    resources = local.project_roles
  }

  statement {
    sid = "ManageProjectKeys"
    actions = [
      "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt", "kms:DeleteAlias", "kms:EnableKeyRotation",
      "kms:Encrypt", "kms:GenerateDataKey", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:TagResource",
      "kms:UpdateAlias", "kms:UpdateKeyDescription",
    ]
    resources = [local.project_kms_keys, "arn:${local.partition}:kms:${local.region}:${local.account_id}:alias/${var.name_prefix}*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Environment"
      values   = [var.environment]
    }
  }

  statement {
    sid = "ManageProjectRepository"
    actions = [
      "ecr:CreateRepository", "ecr:DeleteLifecyclePolicy", "ecr:DeleteRepository", "ecr:DeleteRepositoryPolicy",
      "ecr:PutImageScanningConfiguration", "ecr:PutImageTagMutability", "ecr:PutLifecyclePolicy",
      "ecr:SetRepositoryPolicy", "ecr:TagResource", "ecr:UntagResource",
    ]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid = "ManageProjectSecurityGroups"
    actions = [
      "ec2:AuthorizeSecurityGroupEgress", "ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteSecurityGroup",
      "ec2:ModifySecurityGroupRules", "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
      "ec2:UpdateSecurityGroupRuleDescriptionsEgress", "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Environment"
      values   = [var.environment]
    }
  }

  statement {
    sid     = "CreateTaggedSecurityGroups"
    actions = ["ec2:CreateSecurityGroup", "ec2:CreateTags"]
    resources = [
      "arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/*",
      "arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group-rule/*",
      "arn:${local.partition}:ec2:${local.region}:${local.account_id}:vpc/*",
    ]
  }

  statement {
    sid = "ManageProjectSageMaker"
    actions = [
      "sagemaker:AddTags", "sagemaker:CreateDomain", "sagemaker:CreateMlflowTrackingServer",
      "sagemaker:CreateSpace", "sagemaker:CreateUserProfile", "sagemaker:DeleteDomain",
      "sagemaker:DeleteMlflowTrackingServer", "sagemaker:DeleteSpace", "sagemaker:DeleteTags",
      "sagemaker:DeleteUserProfile", "sagemaker:UpdateDomain", "sagemaker:UpdateMlflowTrackingServer",
      "sagemaker:UpdateSpace", "sagemaker:UpdateUserProfile",
    ]
    resources = local.project_sagemaker
  }

  statement {
    sid = "ManageSageMakerLogGroups"
    actions = [
      "logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:DeleteRetentionPolicy",
      "logs:DisassociateKmsKey", "logs:PutRetentionPolicy", "logs:TagResource", "logs:UntagResource",
    ]
    resources = local.project_logs
  }

  statement {
    sid = "ManageProjectSecrets"
    actions = [
      "secretsmanager:CreateSecret", "secretsmanager:DeleteResourcePolicy", "secretsmanager:DeleteSecret",
      "secretsmanager:PutResourcePolicy", "secretsmanager:PutSecretValue", "secretsmanager:TagResource",
      "secretsmanager:UpdateSecret",
    ]
    resources = [local.project_secrets]
  }

  statement {
    sid = "ManageProjectSchedules"
    actions = [
      "scheduler:CreateSchedule", "scheduler:CreateScheduleGroup", "scheduler:DeleteSchedule",
      "scheduler:DeleteScheduleGroup", "scheduler:TagResource", "scheduler:UpdateSchedule",
    ]
    resources = [
      "${local.project_schedule}:schedule-group/${var.name_prefix}*",
      "${local.project_schedule}:schedule/${var.name_prefix}*/*",
    ]
  }

  # Account-level calls without resource-level permissions: creating a key
  # (its policy and tags are then managed above) and Secrets Manager's random
  # password generator (the Ray token; it reads no resource).
  statement {
    sid       = "AccountLevelCreates"
    actions   = ["kms:CreateKey", "secretsmanager:GetRandomPassword"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "apply" {
  name   = "terraform-apply"
  role   = aws_iam_role.apply.id
  policy = data.aws_iam_policy_document.apply.json
}

# --------------------------------------------------------------- image role
resource "aws_iam_role" "image" {
  name                 = "${var.name_prefix}-ci-image"
  description          = "kon_ray ${var.environment}: push the project image to its ECR repository from GitHub Actions"
  assume_role_policy   = data.aws_iam_policy_document.trust["image"].json
  max_session_duration = var.max_session_duration
}

data "aws_iam_policy_document" "image" {
  # Registry login: account-level, AWS supports no resource for it.
  statement {
    sid       = "EcrLogin"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid    = "PushProjectImage"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [var.ecr_repository_arn]
  }

  dynamic "statement" {
    for_each = var.promote_from_repository_arn == null ? [] : [var.promote_from_repository_arn]
    content {
      sid    = "PullPromotedImage"
      effect = "Allow"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:DescribeImages",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "image" {
  name   = "ecr-push-project-repository"
  role   = aws_iam_role.image.id
  policy = data.aws_iam_policy_document.image.json
}
