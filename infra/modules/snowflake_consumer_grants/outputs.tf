output "grant_consumer_role_name" {
  description = "Role that received the read grants."
  value       = var.consumer_role_name
}

output "grant_public_schema" {
  description = "Fully qualified public schema the consumer may read."
  value       = local.public_schema
}

output "grant_privileges" {
  description = "Every privilege this module grants (always a subset of USAGE and SELECT)."
  value = distinct(concat(
    snowflake_grant_privileges_to_account_role.database_usage.privileges,
    snowflake_grant_privileges_to_account_role.schema_usage.privileges,
    flatten([for g in snowflake_grant_privileges_to_account_role.select_current : g.privileges]),
    flatten([for g in snowflake_grant_privileges_to_account_role.select_future : g.privileges]),
  ))
}
