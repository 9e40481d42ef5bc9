output "warehouse_name" {
  description = "Name of the warehouse."
  value       = snowflake_warehouse.this.name
}

output "warehouse_fully_qualified_name" {
  description = "Fully qualified (quoted) name of the warehouse."
  value       = snowflake_warehouse.this.fully_qualified_name
}

output "resource_monitor_name" {
  description = "Name of the resource monitor that caps the warehouse's monthly credits."
  value       = snowflake_resource_monitor.this.name
}
