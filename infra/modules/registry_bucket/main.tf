data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  log_bucket_name = coalesce(var.log_bucket_name, "${var.bucket_name}-access-logs")
  producers       = { for name, project in var.projects : name => project if project.publishes }
  # Every object key of the registry starts with this ARN prefix.
  registry_arn      = "${aws_s3_bucket.this.arn}/${var.registry_prefix}"
  access_log_prefix = "s3-access/${var.bucket_name}/"
}

################################################################################
# Encryption key
################################################################################

resource "aws_kms_key" "this" {
  description             = "Encrypts the dbt mesh manifest registry in ${var.bucket_name}."
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.bucket_name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; the statement delegates to IAM policies of the account, which grant kms:Decrypt/GenerateDataKey on this key ARN alone.
  #checkov:skip=CKV_AWS_111:Same key-policy delegation as above; write access is granted per principal by the IAM policies below.
  #checkov:skip=CKV_AWS_356:In a key policy "*" can only name the key the policy is attached to.
  statement {
    sid       = "DelegateToAccountIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

################################################################################
# Registry bucket
################################################################################

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Manifests are small, re-publishable from CI and versioned; cross-region replication would double cost for no recovery gain.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events; consumers poll `latest` on their own schedule.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    # One data key per bucket instead of per object keeps KMS request charges near zero.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {
      prefix = ""
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # Lifecycle rules on noncurrent versions are rejected until versioning is on.
  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  bucket        = aws_s3_bucket.this.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = local.access_log_prefix
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # A policy put before the public access block exists could be judged public and rejected.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  dynamic "statement" {
    for_each = var.enforce_create_only_history ? [1] : []

    content {
      # Clients already send If-None-Match on history writes; this makes the bucket refuse any
      # write that does not, so a published version cannot be replaced by a buggy publisher.
      sid       = "DenyHistoryOverwrite"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${local.registry_arn}/*/history/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "Null"
        variable = "s3:if-none-match"
        values   = ["true"]
      }

      condition {
        test     = "Bool"
        variable = "s3:ObjectCreationOperation"
        values   = ["true"]
      }
    }
  }
}

################################################################################
# Access-log bucket
################################################################################

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_144:Access logs are an audit aid, not primary data; replication is not worth its cost here.
  #checkov:skip=CKV2_AWS_62:Nothing consumes access-log events.
  #checkov:skip=CKV_AWS_145:S3 server access logging only delivers to buckets encrypted with SSE-S3, not SSE-KMS.
  bucket        = local.log_bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket = aws_s3_bucket.logs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      # The logging service cannot write to SSE-KMS buckets.
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {
      prefix = ""
    }

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

data "aws_iam_policy_document" "logs" {
  statement {
    # With ACLs disabled, log delivery is authorised by this policy instead of the log-delivery ACL.
    sid       = "AllowServerAccessLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/${local.access_log_prefix}*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

################################################################################
# IAM policies for CI roles
################################################################################

# Read-only access for every project's CI: published interfaces, consumers' usage, when each
# public node's data was last built (`freshness/`), breaking-change proposals and their
# acknowledgements; never `state/`, which holds each project's private full manifest.
resource "aws_iam_policy" "consumer_read" {
  name        = "${var.bucket_name}-consumer-read"
  description = "Read published interfaces, their history, consumers' usage and producers' freshness in the dbt mesh registry."
  policy      = data.aws_iam_policy_document.consumer_read.json
  tags        = var.tags
}

data "aws_iam_policy_document" "consumer_read" {
  statement {
    sid     = "ReadPublishedObjects"
    actions = ["s3:GetObject"]
    resources = [
      "${local.registry_arn}/*/latest/manifest.json",
      "${local.registry_arn}/*/history/*/manifest.json",
      "${local.registry_arn}/*/usage/manifest.json",
      "${local.registry_arn}/*/freshness/*",
      "${local.registry_arn}/*/proposals/*",
      "${local.registry_arn}/*/acknowledgements/*",
    ]
  }

  statement {
    sid       = "ListRegistry"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.registry_prefix}/*"]
    }
  }

  statement {
    sid       = "DecryptRegistryObjects"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}

# Read-only access for the job that plans a main-branch run (`invoke plan`): what consumers read,
# plus every project's fingerprint record (what its last passing build read). Never `state/`.
resource "aws_iam_policy" "plan_read" {
  name        = "${var.bucket_name}-plan-read"
  description = "Read interfaces, usage, freshness and fingerprint records in the dbt mesh registry, to plan a run."
  policy      = data.aws_iam_policy_document.plan_read.json
  tags        = var.tags
}

data "aws_iam_policy_document" "plan_read" {
  source_policy_documents = [data.aws_iam_policy_document.consumer_read.json]

  statement {
    sid       = "ReadFingerprintRecords"
    actions   = ["s3:GetObject"]
    resources = ["${local.registry_arn}/*/fingerprint/*"]
  }
}

# One per producer: write its own prefix only. History stays create-only (If-None-Match on the
# client, DenyHistoryOverwrite in the bucket policy) and can never be deleted by CI.
resource "aws_iam_policy" "publisher" {
  for_each = local.producers

  name        = "${var.bucket_name}-${each.key}-publisher"
  description = "Publish the ${each.key} interface under ${var.registry_prefix}/${each.key}/ in the dbt mesh registry."
  policy      = data.aws_iam_policy_document.publisher[each.key].json
  tags        = var.tags
}

data "aws_iam_policy_document" "publisher" {
  for_each = local.producers

  statement {
    sid       = "WriteOwnPrefix"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.registry_arn}/${each.key}/*"]
  }

  statement {
    sid       = "NeverDeleteHistory"
    effect    = "Deny"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = ["${local.registry_arn}/${each.key}/*/history/*"]
  }

  statement {
    sid       = "UseRegistryKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
}

# One per project, for the main branch: its own private `state/`, the `usage/` it reports and the
# `fingerprint/` of its last passing build (a producer also writes `freshness/` under its publisher
# policy).
resource "aws_iam_policy" "project_state" {
  for_each = var.projects

  name        = "${var.bucket_name}-${each.key}-state"
  description = "Read and write ${each.key}'s own state, usage and fingerprint objects in the dbt mesh registry."
  policy      = data.aws_iam_policy_document.project_state[each.key].json
  tags        = var.tags
}

data "aws_iam_policy_document" "project_state" {
  for_each = var.projects

  statement {
    sid     = "ReadWriteOwnStateAndUsage"
    actions = ["s3:GetObject", "s3:PutObject"]
    resources = [
      "${local.registry_arn}/${each.key}/*/state/*",
      "${local.registry_arn}/${each.key}/*/usage/*",
      "${local.registry_arn}/${each.key}/*/fingerprint/*",
      "${local.registry_arn}/${each.key}/*/proposals/*",
      "${local.registry_arn}/${each.key}/*/acknowledgements/*",
    ]
  }

  statement {
    sid       = "UseRegistryKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
}

# One per project, for pull requests: read its own state (to build only what changed), write nothing.
resource "aws_iam_policy" "state_read" {
  for_each = var.projects

  name        = "${var.bucket_name}-${each.key}-state-read"
  description = "Read ${each.key}'s own state manifest in the dbt mesh registry."
  policy      = data.aws_iam_policy_document.state_read[each.key].json
  tags        = var.tags
}

data "aws_iam_policy_document" "state_read" {
  for_each = var.projects

  statement {
    sid       = "ReadOwnState"
    actions   = ["s3:GetObject"]
    resources = ["${local.registry_arn}/${each.key}/*/state/manifest.json"]
  }

  statement {
    sid       = "DecryptRegistryObjects"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}
