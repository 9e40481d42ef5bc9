variable "consumer_role_name" {
  description = "Functional role of the consuming project, e.g. DBT_DOWN_ROLE."
  type        = string

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.consumer_role_name))
    error_message = "consumer_role_name must match ^[A-Z_][A-Z0-9_$]*$."
  }
}

variable "producer_database_name" {
  description = "Database of the upstream (producer) project, e.g. DBT_UP_PROD."
  type        = string

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.producer_database_name))
    error_message = "producer_database_name must match ^[A-Z_][A-Z0-9_$]*$."
  }
}

variable "producer_public_schema" {
  description = "The producer's public schema (MARTS): consumers get USAGE on it; SELECT follows each publish, per relation. Never RAW or STAGING."
  type        = string

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.producer_public_schema)) && !contains(["RAW", "STAGING"], var.producer_public_schema)
    error_message = "producer_public_schema must be an identifier matching ^[A-Z_][A-Z0-9_$]*$ and must not be RAW or STAGING: those are the producer's private layers."
  }
}
