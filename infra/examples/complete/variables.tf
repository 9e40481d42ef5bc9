variable "aws_region" {
  description = "AWS region of the registry bucket."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like eu-west-1."
  }
}

variable "registry_bucket_name" {
  description = "S3 bucket of the manifest registry. `invoke infra.plan` fills it from mesh.yml."
  type        = string
}

variable "registry_prefix" {
  description = "Key prefix of the registry. `invoke infra.plan` fills it from mesh.yml."
  type        = string
  default     = "mesh"
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose workflows may assume the CI roles."
  type        = string
}

variable "create_github_oidc_provider" {
  description = "Create the GitHub OIDC provider; false when the account has one already."
  type        = bool
  default     = true
}

variable "github_oidc_provider_arn" {
  description = "Existing GitHub OIDC provider ARN, used when create_github_oidc_provider is false."
  type        = string
  default     = null
}

variable "projects" {
  description = "The mesh's projects. `invoke infra.plan` fills it from mesh.yml and each project's dependencies.yml."
  type = map(object({
    database      = string
    warehouse     = string
    role          = string
    public_schema = optional(string)
    schemas       = optional(list(string), ["RAW", "STAGING", "MARTS"])
    upstreams     = optional(list(string), [])
    service_user  = optional(string)
  }))

  validation {
    condition     = alltrue([for p in values(var.projects) : p.public_schema == null || !contains(["RAW", "STAGING"], coalesce(p.public_schema, "MARTS"))])
    error_message = "public_schema must not be RAW or STAGING: consumers may only ever read the public layer."
  }
}

variable "service_user_rsa_public_keys" {
  description = "Base64 body of each project's CI public key, by project name."
  type        = map(string)
  default     = {}
}

variable "warehouse_monthly_credit_quota" {
  description = "Monthly credit quota of each warehouse's resource monitor."
  type        = number
  default     = 20
}

variable "write_audit_publish" {
  description = "Write-audit-publish of the data on Snowflake (mesh.yml targets.<target>.wap, passed by invoke infra.plan/apply)."
  type        = bool
  default     = true
}
