variable "name_prefix" {
  description = "Prefix of IAM role names, e.g. dbt-mesh gives dbt-mesh-dbt-up-main."
  type        = string
  default     = "dbt-mesh"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name_prefix))
    error_message = "name_prefix must be 1-31 characters from a-z, 0-9 and '-', starting with a letter."
  }
}

variable "registry_bucket_name" {
  description = "S3 bucket of the manifest registry (the bucket of the prod target's s3:// registry URL in mesh.yml)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,49}[a-z0-9]$", var.registry_bucket_name))
    error_message = "registry_bucket_name must be 3-51 characters of a-z, 0-9 and '-', starting and ending with a letter or digit: the access-log bucket \"<name>-access-logs\" must fit in S3's 63 characters, and the KMS alias \"alias/<name>\" allows no '.'."
  }

  validation {
    condition     = !can(regex("^(xn--|sthree-|amzn-s3-demo-)|(-s3alias|--ol-s3|--x-s3|--table-s3)$", var.registry_bucket_name))
    error_message = "registry_bucket_name must not start with xn--, sthree- or amzn-s3-demo-, nor end with -s3alias, --ol-s3, --x-s3 or --table-s3: S3 reserves them."
  }
}

variable "registry_prefix" {
  description = "Key prefix of the registry inside the bucket (the path of the s3:// registry URL)."
  type        = string
  default     = "mesh"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", var.registry_prefix))
    error_message = "registry_prefix must be path segments of A-Z, a-z, 0-9, '_' and '-' without leading or trailing '/'."
  }
}

variable "github_repository" {
  description = "GitHub repository, as owner/name, whose workflows may assume the CI roles."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must look like owner/name."
  }
}

variable "github_main_branch" {
  description = "Branch whose workflow runs may publish. Pushes and the nightly schedule run on it."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.github_main_branch)) && !can(regex("[*?]", var.github_main_branch))
    error_message = "github_main_branch must be a plain branch name without wildcards."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider. Set false when the account already has one and pass its ARN in github_oidc_provider_arn."
  type        = bool
  default     = true
}

variable "github_oidc_provider_arn" {
  description = "ARN of an existing token.actions.githubusercontent.com OIDC provider; used when create_github_oidc_provider is false."
  type        = string
  default     = null

  validation {
    condition     = var.github_oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\\.actions\\.githubusercontent\\.com$", var.github_oidc_provider_arn))
    error_message = "github_oidc_provider_arn must be the ARN of a token.actions.githubusercontent.com OIDC provider."
  }
}

variable "projects" {
  description = "The mesh's dbt projects, by name, as mesh.yml describes them. A project with public_schema is a producer; upstreams lists the producers a consumer reads (from its dependencies.yml)."
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
    condition     = alltrue([for name in keys(var.projects) : can(regex("^[a-z][a-z0-9_]{0,62}$", name))])
    error_message = "Every project name must match ^[a-z][a-z0-9_]{0,62}$."
  }

  validation {
    condition = alltrue(flatten([for p in values(var.projects) : [
      for id in concat([p.database, p.warehouse, p.role], p.schemas) : can(regex("^[A-Z_][A-Z0-9_$]*$", id))
    ]]))
    error_message = "database, warehouse, role and schemas must be unquoted upper-case Snowflake identifiers (^[A-Z_][A-Z0-9_$]*$)."
  }

  validation {
    condition = alltrue([for p in values(var.projects) :
      p.public_schema == null || (can(regex("^[A-Z_][A-Z0-9_$]*$", p.public_schema)) && !contains(["RAW", "STAGING"], coalesce(p.public_schema, "RAW")))
    ])
    error_message = "public_schema must be an identifier other than RAW and STAGING: consumers may only ever read the public layer."
  }

  validation {
    condition     = alltrue([for p in values(var.projects) : p.public_schema == null || contains(p.schemas, coalesce(p.public_schema, "-"))])
    error_message = "Every public_schema must be one of the project's schemas (default RAW, STAGING, MARTS): consumers get USAGE on a schema the project creates."
  }

  validation {
    condition = alltrue(flatten([for p in values(var.projects) : [
      for up in p.upstreams : contains(keys(var.projects), up) && try(var.projects[up].public_schema != null, false)
    ]]))
    error_message = "Every upstream must name another project of the mesh that has a public_schema."
  }

  # IAM role names are "<name_prefix>-<project with - for _>-main" (and "-pr"), at most 64 characters.
  validation {
    condition     = alltrue([for name in keys(var.projects) : length("${var.name_prefix}-${replace(name, "_", "-")}-main") <= 64])
    error_message = "Every IAM role name \"<name_prefix>-<project>-main\" must fit in 64 characters: shorten name_prefix or the project name."
  }
}

variable "write_audit_publish" {
  description = "Write-audit-publish of the data (mesh.yml targets.<target>.wap): each project role may create the zero-copy clone it builds into before the swap."
  type        = bool
  default     = true
}

variable "service_user_rsa_public_keys" {
  description = "Base64 body of each project's CI public key, by project name (PEM without header, footer and newlines). Projects left out get a CI user without a key."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key in values(var.service_user_rsa_public_keys) : can(regex("^MII[A-Za-z0-9+/=]+$", key))])
    error_message = "Each public key must be the base64 body of an RSA public key (starts with MII, no PEM header or newlines)."
  }
}

variable "warehouse_size" {
  description = "Size of every warehouse."
  type        = string
  default     = "XSMALL"

  validation {
    condition     = contains(["XSMALL", "SMALL", "MEDIUM", "LARGE", "XLARGE"], var.warehouse_size)
    error_message = "warehouse_size must be one of XSMALL, SMALL, MEDIUM, LARGE, XLARGE."
  }
}

variable "warehouse_auto_suspend_seconds" {
  description = "Idle seconds before each warehouse suspends."
  type        = number
  default     = 60

  validation {
    condition     = var.warehouse_auto_suspend_seconds >= 60 && var.warehouse_auto_suspend_seconds <= 3600
    error_message = "warehouse_auto_suspend_seconds must be between 60 and 3600."
  }
}

variable "warehouse_monthly_credit_quota" {
  description = "Monthly credit quota of each warehouse's resource monitor."
  type        = number
  default     = 20

  validation {
    condition     = var.warehouse_monthly_credit_quota > 0
    error_message = "warehouse_monthly_credit_quota must be positive."
  }
}

variable "tags" {
  description = "Tags applied to every AWS resource that supports them."
  type        = map(string)
  default     = {}
}
