variable "bucket_name" {
  type        = string
  description = "Bucket receiving the code (the data bucket)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key encrypting the uploaded objects."
}

variable "key_prefix" {
  type        = string
  description = "Key prefix under which each source directory is uploaded (no leading or trailing slash)."
  default     = "code"

  validation {
    condition     = !startswith(var.key_prefix, "/") && !endswith(var.key_prefix, "/")
    error_message = "key_prefix must not start or end with '/'."
  }
}

variable "source_dirs" {
  type        = map(string)
  description = "Map of destination name => local directory, e.g. { kon_ray = \"../../../kon_ray\", conf = \"../../../conf\" }. __pycache__, *.pyc and dotfiles are skipped."
}
