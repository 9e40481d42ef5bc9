locals {
  service_user_name = coalesce(var.service_user_name, "${upper(var.project_name)}_CI_USER")
}

resource "snowflake_account_role" "this" {
  provider = snowflake.securityadmin

  name    = var.role_name
  comment = "Functional role of the dbt project ${var.project_name}; owns ${var.database_name}."
}

# Granting the role to SYSADMIN keeps every object it owns manageable by administrators and by
# this Terraform, which runs as SYSADMIN.
resource "snowflake_grant_account_role" "to_sysadmin" {
  provider = snowflake.securityadmin

  role_name        = snowflake_account_role.this.name
  parent_role_name = "SYSADMIN"
}

resource "snowflake_database" "this" {
  name                           = var.database_name
  comment                        = "dbt project ${var.project_name}, managed by Terraform."
  data_retention_time_in_days    = var.data_retention_time_in_days
  drop_public_schema_on_creation = true
}

resource "snowflake_schema" "this" {
  for_each = toset(var.schemas)

  database = snowflake_database.this.name
  name     = each.key
  comment  = "dbt project ${var.project_name}, layer ${each.key}."
}

resource "snowflake_grant_ownership" "database" {
  account_role_name   = snowflake_account_role.this.name
  outbound_privileges = "COPY"

  on {
    object_type = "DATABASE"
    object_name = snowflake_database.this.name
  }

  depends_on = [snowflake_grant_account_role.to_sysadmin]
}

# dbt creates and replaces tables, so the project role must own the schemas, not just use them.
resource "snowflake_grant_ownership" "schema" {
  for_each = snowflake_schema.this

  account_role_name   = snowflake_account_role.this.name
  outbound_privileges = "COPY"

  on {
    object_type = "SCHEMA"
    object_name = each.value.fully_qualified_name
  }

  depends_on = [snowflake_grant_account_role.to_sysadmin]
}

# USAGE on the warehouse the project runs on; nothing else is granted to its own role.
resource "snowflake_grant_privileges_to_account_role" "this" {
  provider = snowflake.securityadmin

  account_role_name = snowflake_account_role.this.name
  privileges        = ["USAGE"]

  on_account_object {
    object_type = "WAREHOUSE"
    object_name = var.warehouse_name
  }
}

# Write-audit-publish (mesh/snowflake_wap.py) builds into a zero-copy clone of the database,
# <DATABASE>__AUDIT, and swaps it in after the tests passed: the role creates the clone, so it
# needs CREATE DATABASE on the account. It owns what it creates and reads nothing it does not own.
resource "snowflake_grant_privileges_to_account_role" "create_database" {
  count    = var.write_audit_publish ? 1 : 0
  provider = snowflake.securityadmin

  account_role_name = snowflake_account_role.this.name
  privileges        = ["CREATE DATABASE"]
  on_account        = true
}

resource "snowflake_service_user" "this" {
  provider = snowflake.securityadmin

  name              = local.service_user_name
  comment           = "CI service user of the dbt project ${var.project_name}; key-pair authentication only."
  default_role      = snowflake_account_role.this.name
  default_warehouse = var.warehouse_name
  default_namespace = snowflake_database.this.name
  # Secondary roles would let CI use privileges beyond its functional role.
  default_secondary_roles_option = "NONE"
  rsa_public_key                 = var.service_user_rsa_public_key
}

resource "snowflake_grant_account_role" "to_service_user" {
  provider = snowflake.securityadmin

  role_name = snowflake_account_role.this.name
  user_name = snowflake_service_user.this.name
}
