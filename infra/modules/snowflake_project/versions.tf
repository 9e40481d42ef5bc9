terraform {
  required_version = ">= 1.5.0"

  required_providers {
    snowflake = {
      source  = "snowflakedb/snowflake"
      version = ">= 2.0.0, < 3.0.0"
      # Roles, users and grants need SECURITYADMIN; databases and schemas stay with SYSADMIN.
      configuration_aliases = [snowflake.securityadmin]
    }
  }
}
