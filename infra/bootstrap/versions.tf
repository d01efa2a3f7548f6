terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.83"
    }
  }

  # Chicken-and-egg: this root creates the bucket that holds every other
  # root's state, so its own state starts local. Once applied, it may be
  # migrated into the bucket it created (see README.md).
}
