output "registry_url" {
  description = "Registry URL for mesh.yml (targets.prod.registry)."
  value       = module.dbt_mesh.registry_url
}

output "iam_role_main_arns" {
  description = "CI role for the main branch, by project."
  value       = module.dbt_mesh.iam_role_main_arns
}

output "iam_role_pull_request_arns" {
  description = "Read-only CI role for pull requests, by project."
  value       = module.dbt_mesh.iam_role_pull_request_arns
}

output "snowflake_project_service_users" {
  description = "CI service user of each project."
  value       = module.dbt_mesh.snowflake_project_service_users
}
