data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

# Key policy: the AWS-recommended default. It delegates authorisation to IAM
# in this account (no wildcard principal, no cross-account access); who may
# actually use the key is decided by the least-privilege IAM policies in the
# iam module, which name this key's ARN explicitly.
data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:Key policy. "Resource = *" in a KMS key policy means "this key" only, and the root-account statement is the AWS default that keeps the key manageable through IAM.
  #checkov:skip=CKV_AWS_111:Key policy. "Resource = *" in a KMS key policy means "this key" only; write access is granted to IAM principals of this account by their own scoped policies.
  #checkov:skip=CKV_AWS_356:Key policy. "Resource = *" in a KMS key policy means "this key" only; it cannot name another resource.
  statement {
    sid       = "EnableIAMPoliciesOfThisAccount"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts log groups with this key on its own behalf (an
  # IAM delegation is not enough for a service principal), and only for log
  # groups of this account and region.
  dynamic "statement" {
    for_each = var.allow_cloudwatch_logs ? [1] : []
    content {
      sid       = "CloudWatchLogsOfThisAccount"
      effect    = "Allow"
      actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
      }

      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:*"]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  rotation_period_in_days = var.rotation_period_in_days
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.alias}"
  target_key_id = aws_kms_key.this.key_id
}
