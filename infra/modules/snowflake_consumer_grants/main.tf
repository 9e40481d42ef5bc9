locals {
  public_schema = "\"${var.producer_database_name}\".\"${var.producer_public_schema}\""
}

# Consumers get USAGE on the producer database and its public schema, nothing else: USAGE shows
# no data, and nothing here reaches RAW or STAGING or writes.
resource "snowflake_grant_privileges_to_account_role" "database_usage" {
  account_role_name = var.consumer_role_name
  privileges        = ["USAGE"]

  on_account_object {
    object_type = "DATABASE"
    object_name = var.producer_database_name
  }
}

resource "snowflake_grant_privileges_to_account_role" "schema_usage" {
  account_role_name = var.consumer_role_name
  privileges        = ["USAGE"]

  on_schema {
    schema_name = local.public_schema
  }
}

# SELECT is granted per published relation after each publish (`invoke snowflake.grants`, or
# mesh.snowflake.sync_grants), never on ALL or FUTURE objects of the schema: the public schema also
# holds protected models, and Terraform cannot know the interface at plan time.
