resource "aws_ecr_repository" "this" {
  name = var.name
  # Tags can never be moved to another image: a deployed tag (git SHA) always
  # means the same bits. CI therefore tags with unique values only (see
  # .github/workflows/image.yml) and never re-pushes a floating `latest`.
  image_tag_mutability = "IMMUTABLE"
  force_delete         = false

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

# Keep the 10 most recent images, whatever their tags; older ones expire.
data "aws_ecr_lifecycle_policy_document" "this" {
  rule {
    priority    = 1
    description = "Keep only the last 10 images"

    selection {
      tag_status   = "any"
      count_type   = "imageCountMoreThan"
      count_number = 10
    }

    action {
      type = "expire"
    }
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy     = data.aws_ecr_lifecycle_policy_document.this.json
}

# Read-only access for the roles that promote an image from this repository
# to another environment's repository (by digest: the same bits).
data "aws_iam_policy_document" "pull" {
  count = length(var.pull_principal_role_arns) > 0 ? 1 : 0

  statement {
    sid    = "PullForPromotion"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
    ]

    principals {
      type        = "AWS"
      identifiers = var.pull_principal_role_arns
    }
  }
}

resource "aws_ecr_repository_policy" "pull" {
  count = length(var.pull_principal_role_arns) > 0 ? 1 : 0

  repository = aws_ecr_repository.this.name
  policy     = data.aws_iam_policy_document.pull[0].json
}
