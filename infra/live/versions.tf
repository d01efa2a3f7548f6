terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.83"
    }
  }

  # Remote state in the bucket created by infra/bootstrap, with S3-native
  # locking (a .tflock object next to the state; no DynamoDB table). One
  # backend file per environment (<env>.s3.tfbackend: key, region, encrypt,
  # locking); the account-specific bucket and KMS key are passed at init:
  #   terraform init -backend-config=<env>.s3.tfbackend \
  #     -backend-config="bucket=<state_bucket>" -backend-config="kms_key_id=<state_kms_key_arn>"
  backend "s3" {}
}
