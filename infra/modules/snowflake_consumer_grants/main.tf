locals {
  public_schema = "\"${var.producer_database_name}\".\"${var.producer_public_schema}\""
}

# Consumers get USAGE to reach the public schema and SELECT inside it: nothing that writes, and
# nothing on the producer's RAW or STAGING layers.
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

resource "snowflake_grant_privileges_to_account_role" "select_current" {
  for_each = toset(var.object_types)

  account_role_name = var.consumer_role_name
  privileges        = ["SELECT"]

  on_schema_object {
    all {
      object_type_plural = each.key
      in_schema          = local.public_schema
    }
  }
}

# dbt replaces tables on every run; future grants make the replacements readable without a re-apply.
resource "snowflake_grant_privileges_to_account_role" "select_future" {
  for_each = toset(var.object_types)

  account_role_name = var.consumer_role_name
  privileges        = ["SELECT"]

  on_schema_object {
    future {
      object_type_plural = each.key
      in_schema          = local.public_schema
    }
  }
}
