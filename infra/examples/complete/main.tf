module "dbt_mesh" {
  source = "../.."

  providers = {
    aws                     = aws
    snowflake               = snowflake
    snowflake.securityadmin = snowflake.securityadmin
    snowflake.accountadmin  = snowflake.accountadmin
  }

  registry_bucket_name           = var.registry_bucket_name
  registry_prefix                = var.registry_prefix
  github_repository              = var.github_repository
  create_github_oidc_provider    = var.create_github_oidc_provider
  github_oidc_provider_arn       = var.github_oidc_provider_arn
  projects                       = var.projects
  service_user_rsa_public_keys   = var.service_user_rsa_public_keys
  warehouse_monthly_credit_quota = var.warehouse_monthly_credit_quota
  write_audit_publish            = var.write_audit_publish

  tags = {
    project = "dbt-mesh"
  }
}
