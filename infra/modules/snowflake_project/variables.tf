variable "project_name" {
  description = "dbt project name as in mesh.yml, e.g. dbt_up. Used in comments and the default service user name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.project_name))
    error_message = "project_name must match ^[a-z][a-z0-9_]{0,62}$."
  }
}

variable "database_name" {
  description = "Database the project builds into, e.g. DBT_UP_PROD."
  type        = string

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.database_name))
    error_message = "database_name must match ^[A-Z_][A-Z0-9_$]*$ (an unquoted upper-case Snowflake identifier)."
  }
}

variable "schemas" {
  description = "Schemas created in the database. dbt writes RAW, STAGING and MARTS exactly by these names."
  type        = list(string)
  default     = ["RAW", "STAGING", "MARTS"]

  validation {
    condition     = length(var.schemas) > 0 && alltrue([for s in var.schemas : can(regex("^[A-Z_][A-Z0-9_$]*$", s))])
    error_message = "schemas must be a non-empty list of identifiers matching ^[A-Z_][A-Z0-9_$]*$."
  }
}

variable "role_name" {
  description = "Functional role that owns the database and that the project's CI user runs as, e.g. DBT_UP_ROLE."
  type        = string

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.role_name)) && !contains(["ACCOUNTADMIN", "SECURITYADMIN", "SYSADMIN", "USERADMIN", "ORGADMIN", "PUBLIC"], var.role_name)
    error_message = "role_name must match ^[A-Z_][A-Z0-9_$]*$ and must not be a system role."
  }
}

variable "warehouse_name" {
  description = "Warehouse the project runs on (created by the snowflake_warehouse module); the role gets USAGE on it."
  type        = string

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.warehouse_name))
    error_message = "warehouse_name must match ^[A-Z_][A-Z0-9_$]*$."
  }
}

variable "service_user_name" {
  description = "Name of the CI service user. Defaults to <PROJECT_NAME>_CI_USER."
  type        = string
  default     = null

  validation {
    condition     = var.service_user_name == null || can(regex("^[A-Z_][A-Z0-9_$]*$", var.service_user_name))
    error_message = "service_user_name must match ^[A-Z_][A-Z0-9_$]*$."
  }
}

variable "service_user_rsa_public_key" {
  description = "Base64 body of the CI user's RSA public key (PEM without header, footer and newlines). Null creates the user without a key; CI cannot log in until one is set."
  type        = string
  default     = null

  validation {
    condition     = var.service_user_rsa_public_key == null || can(regex("^MII[A-Za-z0-9+/=]+$", var.service_user_rsa_public_key))
    error_message = "service_user_rsa_public_key must be the base64 body of an RSA public key (starts with MII, no PEM header or newlines)."
  }
}

variable "data_retention_time_in_days" {
  description = "Time Travel retention of the database. Every day kept costs storage for changed data."
  type        = number
  default     = 1

  validation {
    condition     = var.data_retention_time_in_days >= 0 && var.data_retention_time_in_days <= 90
    error_message = "data_retention_time_in_days must be between 0 and 90."
  }
}

variable "write_audit_publish" {
  description = "Let the project role create the zero-copy clone that write-audit-publish builds into (CREATE DATABASE on the account). Set false when mesh.yml sets wap: false for the Snowflake target."
  type        = bool
  default     = true
}
