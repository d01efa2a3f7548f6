locals {
  # { "kon_ray/cluster/ec2.py" = "/abs/path/kon_ray/cluster/ec2.py", ... }
  files = merge([
    for name, dir in var.source_dirs : {
      for f in fileset(dir, "**") : "${name}/${f}" => "${dir}/${f}"
      if !strcontains(f, "__pycache__") && !endswith(f, ".pyc") && !startswith(basename(f), ".")
    }
  ]...)

  content_types = {
    py   = "text/x-python"
    yaml = "application/yaml"
    yml  = "application/yaml"
    json = "application/json"
    md   = "text/markdown"
    txt  = "text/plain"
  }
}

resource "aws_s3_object" "this" {
  for_each = local.files

  bucket                 = var.bucket_name
  key                    = "${var.key_prefix}/${each.key}"
  source                 = each.value
  server_side_encryption = "aws:kms"
  kms_key_id             = var.kms_key_arn
  content_type           = lookup(local.content_types, lower(element(reverse(split(".", each.key)), 0)), "application/octet-stream")

  # Change detection: `etag = filemd5(...)` cannot be used here. With SSE-KMS
  # the ETag S3 returns is not the MD5 of the content, so an etag argument
  # would show a perpetual diff. source_hash is the provider's replacement
  # for exactly this case: it stores filemd5() in state and re-uploads when
  # the local file changes.
  source_hash = filemd5(each.value)
}
