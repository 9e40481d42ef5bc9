variable "bucket_name" {
  description = "Name of the S3 bucket that holds the manifest registry."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit: the KMS alias \"alias/<bucket_name>\" allows no '.'."
  }

  validation {
    condition     = var.log_bucket_name != null || length(var.bucket_name) <= 51
    error_message = "bucket_name must be at most 51 characters when log_bucket_name is not set: the access-log bucket \"<bucket_name>-access-logs\" must fit in S3's 63."
  }
}

variable "log_bucket_name" {
  description = "Name of the bucket that receives the registry's S3 server access logs. Defaults to \"<bucket_name>-access-logs\"."
  type        = string
  default     = null

  validation {
    condition     = var.log_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.log_bucket_name))
    error_message = "log_bucket_name must be a valid S3 bucket name: 3-63 characters from a-z, 0-9, '.' and '-'."
  }
}

variable "registry_prefix" {
  description = "Key prefix under which the registry lives: {prefix}/{project}/{env}/latest/manifest.json."
  type        = string
  default     = "mesh"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", var.registry_prefix))
    error_message = "registry_prefix must be one or more path segments of A-Z, a-z, 0-9, '_' and '-', without leading or trailing '/'."
  }
}

variable "projects" {
  description = "dbt projects that use the registry, by name. `publishes` is true for producers, which get a publisher policy for their own prefix."
  type = map(object({
    publishes = bool
  }))

  validation {
    condition     = alltrue([for name in keys(var.projects) : can(regex("^[a-z][a-z0-9_]{0,62}$", name))])
    error_message = "Every project name must match ^[a-z][a-z0-9_]{0,62}$ (the registry's own rule for names)."
  }

  # The longest policy name is "<bucket_name>-<project>-state-read"; IAM allows 128 characters.
  validation {
    condition     = alltrue([for name in keys(var.projects) : length("${var.bucket_name}-${name}-state-read") <= 128])
    error_message = "Every IAM policy name \"<bucket_name>-<project>-state-read\" must fit in 128 characters: shorten the bucket or the project name."
  }
}

variable "enforce_create_only_history" {
  description = "Deny history writes that do not carry If-None-Match, so a published version can never be overwritten even by a faulty client."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten (noncurrent) object versions, such as earlier `latest` pointers, are deleted."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which unfinished multipart uploads are aborted so their parts stop costing storage."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number of at least 1."
  }
}

variable "access_log_retention_days" {
  description = "Days to keep S3 server access logs in the log bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_retention_days >= 1 && floor(var.access_log_retention_days) == var.access_log_retention_days
    error_message = "access_log_retention_days must be a whole number of at least 1."
  }
}

variable "kms_deletion_window_in_days" {
  description = "Waiting period before a scheduled deletion of the registry's KMS key takes effect."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_in_days >= 7 && var.kms_deletion_window_in_days <= 30
    error_message = "kms_deletion_window_in_days must be between 7 and 30 (the range AWS KMS accepts)."
  }
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete non-empty buckets. Keep false outside throw-away environments: history is the audit trail."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags applied to every resource that supports them."
  type        = map(string)
  default     = {}
}
