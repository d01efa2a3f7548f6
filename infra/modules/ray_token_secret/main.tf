# The Ray cluster's authentication token (RAY_AUTH_TOKEN) in Secrets Manager,
# encrypted with the project key. Terraform creates the secret, not its
# value, so the token is in neither a plan nor the state: set it once (and to
# rotate it) with `aws secretsmanager put-secret-value` (infra/README.md). Only the Ray node roles (EC2 head and
# workers, the SageMaker execution role) and the submitting principals may read it:
# their identity policies allow it, and the resource policy denies everyone
# else, whatever their own policies say.

locals {
  reader_arns = concat(var.node_role_arns, var.submitter_principal_arns)
}

data "aws_iam_policy_document" "access" {
  statement {
    sid       = "OnlyRayNodesAndSubmittersReadTheToken"
    effect    = "Deny"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = local.reader_arns
    }
  }
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:Rotating the Ray token means restarting the cluster with it: done with put-secret-value and a cluster restart (infra/README.md), not by a rotation Lambda.
  name                    = var.name
  description             = "kon_ray: Ray cluster authentication token (RAY_AUTH_TOKEN)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret_policy" "this" {
  secret_arn          = aws_secretsmanager_secret.this.arn
  policy              = data.aws_iam_policy_document.access.json
  block_public_policy = true
}

data "aws_iam_policy_document" "read" {
  statement {
    sid       = "ReadRayToken"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [aws_secretsmanager_secret.this.arn]
  }

  statement {
    sid       = "DecryptRayToken"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
}

data "aws_region" "current" {}

resource "aws_iam_role_policy" "read" {
  for_each = var.node_role_names

  name   = "kon-ray-read-ray-token"
  role   = each.value
  policy = data.aws_iam_policy_document.read.json
}
