terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.83"
    }
  }

  # Remote state in the bucket created by infra/bootstrap, with S3-native
  # locking (a .tflock object next to the state; no DynamoDB table).
  # The bucket name and KMS key are account-specific and passed at init:
  #   terraform init -backend-config="bucket=<state_bucket>" \
  #                  -backend-config="kms_key_id=<state_kms_key_arn>"
  backend "s3" {
    key          = "kon_ray/staging/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    use_lockfile = true
  }
}
