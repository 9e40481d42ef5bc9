locals {
  resource_monitor_name = "${var.name}_MONITOR"
}

resource "snowflake_warehouse" "this" {
  name                = var.name
  warehouse_size      = var.warehouse_size
  auto_suspend        = var.auto_suspend_seconds
  auto_resume         = "true"
  initially_suspended = true
  comment             = var.comment

  lifecycle {
    # Assigned by snowflake_execute.this as ACCOUNTADMIN, which this provider role is not.
    ignore_changes = [resource_monitor]
  }
}

resource "snowflake_resource_monitor" "this" {
  provider = snowflake.accountadmin

  name         = local.resource_monitor_name
  credit_quota = var.monthly_credit_quota
  # frequency/start_timestamp are left to Snowflake's defaults (MONTHLY, starting now): an explicit
  # "IMMEDIATELY" reads back as a timestamp and would show a diff on every plan.

  notify_triggers           = var.notify_at_percent
  suspend_trigger           = 100
  suspend_immediate_trigger = 110
}

resource "snowflake_execute" "this" {
  provider = snowflake.accountadmin

  execute = "ALTER WAREHOUSE \"${snowflake_warehouse.this.name}\" SET RESOURCE_MONITOR = \"${snowflake_resource_monitor.this.name}\""
  revert  = "ALTER WAREHOUSE IF EXISTS \"${snowflake_warehouse.this.name}\" UNSET RESOURCE_MONITOR"
}
