output "account_role_name" {
  description = "Name of the project's functional role."
  value       = snowflake_account_role.this.name
}

output "database_name" {
  description = "Name of the project's database."
  value       = snowflake_database.this.name
}

output "schema_names" {
  description = "Names of the project's schemas, keyed by name (depend on this to wait for their creation)."
  value       = { for name, schema in snowflake_schema.this : name => schema.name }
}

output "schema_fully_qualified_names" {
  description = "Fully qualified names of the project's schemas, keyed by name."
  value       = { for name, schema in snowflake_schema.this : name => schema.fully_qualified_name }
}

output "service_user_name" {
  description = "Name of the project's CI service user."
  value       = snowflake_service_user.this.name
}

output "account_role_privileges" {
  description = "Account-level privileges of the project role: CREATE DATABASE when write_audit_publish is on, else none."
  value       = flatten([for g in snowflake_grant_privileges_to_account_role.create_database : g.privileges])
}
