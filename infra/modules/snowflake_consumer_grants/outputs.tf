output "grant_consumer_role_name" {
  description = "Role that received the grants."
  value       = var.consumer_role_name
}

output "grant_public_schema" {
  description = "Fully qualified public schema the consumer may use; SELECT inside it is granted per published relation."
  value       = local.public_schema
}

output "grant_privileges" {
  description = "Every privilege this module grants (USAGE only; SELECT follows each publish)."
  value = distinct(concat(
    snowflake_grant_privileges_to_account_role.database_usage.privileges,
    snowflake_grant_privileges_to_account_role.schema_usage.privileges,
  ))
}
