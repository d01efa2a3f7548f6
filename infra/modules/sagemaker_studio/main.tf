resource "aws_sagemaker_domain" "this" {
  domain_name = var.domain_name
  auth_mode   = "IAM"
  vpc_id      = var.vpc_id
  subnet_ids  = var.subnet_ids
  # No SageMaker-managed internet access: apps reach AWS through the VPC
  # (endpoints or NAT), under the VPC's own controls.
  app_network_access_type = "VpcOnly"
  kms_key_id              = var.kms_key_arn

  default_user_settings {
    execution_role      = var.execution_role_arn
    security_groups     = var.security_group_ids
    studio_web_portal   = "ENABLED"
    default_landing_uri = "studio::"

    # Idle shutdown must be enabled at domain level for the space setting
    # below to apply.
    code_editor_app_settings {
      app_lifecycle_management {
        idle_settings {
          lifecycle_management        = "ENABLED"
          idle_timeout_in_minutes     = var.idle_timeout_in_minutes
          min_idle_timeout_in_minutes = 60
          max_idle_timeout_in_minutes = 480
        }
      }
    }

    space_storage_settings {
      default_ebs_storage_settings {
        default_ebs_volume_size_in_gb = var.ebs_volume_size_in_gb
        maximum_ebs_volume_size_in_gb = var.max_ebs_volume_size_in_gb
      }
    }
  }

  default_space_settings {
    execution_role  = var.execution_role_arn
    security_groups = var.security_group_ids
  }

  retention_policy {
    home_efs_file_system = var.home_efs_retention
  }
}

resource "aws_sagemaker_user_profile" "this" {
  domain_id         = aws_sagemaker_domain.this.id
  user_profile_name = var.user_profile_name

  user_settings {
    execution_role  = var.execution_role_arn
    security_groups = var.security_group_ids
  }
}

# Private Code Editor space of the user profile: ml.t3.medium, 30 GB EBS,
# stopped automatically when idle.
resource "aws_sagemaker_space" "code_editor" {
  domain_id          = aws_sagemaker_domain.this.id
  space_name         = var.space_name
  space_display_name = "kon_ray Code Editor"

  ownership_settings {
    owner_user_profile_name = aws_sagemaker_user_profile.this.user_profile_name
  }

  space_sharing_settings {
    sharing_type = "Private"
  }

  space_settings {
    app_type = "CodeEditor"

    code_editor_app_settings {
      default_resource_spec {
        instance_type = var.instance_type
      }

      app_lifecycle_management {
        idle_settings {
          idle_timeout_in_minutes = var.idle_timeout_in_minutes
        }
      }
    }

    space_storage_settings {
      ebs_storage_settings {
        ebs_volume_size_in_gb = var.ebs_volume_size_in_gb
      }
    }
  }
}
