output "registry_url" {
  description = "Registry URL for mesh.yml (targets.prod.registry)."
  value       = module.registry_bucket.s3_bucket_registry_url
}

output "registry_bucket_arn" {
  description = "ARN of the registry bucket."
  value       = module.registry_bucket.s3_bucket_arn
}

output "registry_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the registry."
  value       = module.registry_bucket.kms_key_arn
}

output "iam_role_plan_arn" {
  description = "Read-only CI role of the plan job of a main-branch run. Store as repository variable MESH_AWS_ROLE_PLAN."
  value       = aws_iam_role.plan.arn
}

output "iam_role_main_arns" {
  description = "CI role of each project's main-branch job, trusted for the GitHub environment named after the project. Store as that environment's variable AWS_ROLE_MAIN."
  value       = { for name, role in aws_iam_role.main : name => role.arn }
}

output "iam_role_pull_request_arns" {
  description = "Read-only CI role for pull requests, by project. Store as repository variable <PROJECT>_AWS_ROLE_PR."
  value       = { for name, role in aws_iam_role.pull_request : name => role.arn }
}

output "iam_openid_connect_provider_arn" {
  description = "ARN of the GitHub OIDC provider the CI roles trust."
  value       = local.github_oidc_provider_arn
}

output "snowflake_warehouse_names" {
  description = "Warehouses created, by name."
  value       = { for name, warehouse in module.snowflake_warehouse : name => warehouse.warehouse_name }
}

output "snowflake_project_service_users" {
  description = "CI service user of each project. Store as repository variable <PROJECT>_SNOWFLAKE_USER."
  value       = { for name, project in module.snowflake_project : name => project.service_user_name }
}

output "snowflake_consumer_grant_schemas" {
  description = "Public schema each (consumer, producer) edge may read, keyed consumer__producer."
  value       = { for edge, grants in module.snowflake_consumer_grants : edge => grants.grant_public_schema }
}
