locals {
  producers = { for name, project in var.projects : name => project if project.public_schema != null }

  warehouses = toset([for project in values(var.projects) : project.warehouse])

  # One entry per (consumer, producer) edge of the mesh.
  consumer_edges = {
    for edge in flatten([
      for consumer, project in var.projects : [
        for producer in project.upstreams : { consumer = consumer, producer = producer }
      ]
    ]) : "${edge.consumer}__${edge.producer}" => edge
  }

  github_oidc_provider_arn = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.this[0].arn : var.github_oidc_provider_arn

  # Pushes and scheduled runs on the main branch carry this subject (the plan job of mesh.yml);
  # pull requests carry the other. A project's main-branch job runs in a GitHub environment named
  # after the project (mesh-project.yml), whose token carries `environment:<project>` instead: so
  # each project's main role trusts its own environment only.
  github_subject_main         = "repo:${var.github_repository}:ref:refs/heads/${var.github_main_branch}"
  github_subject_pull_request = "repo:${var.github_repository}:pull_request"

  main_role_policies = merge(
    { for name in keys(var.projects) : "${name}/consumer_read" => { project = name, policy_arn = module.registry_bucket.iam_policy_consumer_read_arn } },
    { for name in keys(var.projects) : "${name}/project_state" => { project = name, policy_arn = module.registry_bucket.iam_policy_project_state_arns[name] } },
    { for name in keys(local.producers) : "${name}/publisher" => { project = name, policy_arn = module.registry_bucket.iam_policy_publisher_arns[name] } },
  )

  pull_request_role_policies = merge(
    { for name in keys(var.projects) : "${name}/consumer_read" => { project = name, policy_arn = module.registry_bucket.iam_policy_consumer_read_arn } },
    { for name in keys(var.projects) : "${name}/state_read" => { project = name, policy_arn = module.registry_bucket.iam_policy_state_read_arns[name] } },
  )
}

################################################################################
# Manifest registry
################################################################################

module "registry_bucket" {
  source = "./modules/registry_bucket"

  bucket_name     = var.registry_bucket_name
  registry_prefix = var.registry_prefix
  projects        = { for name, project in var.projects : name => { publishes = project.public_schema != null } }
  tags            = var.tags
}

################################################################################
# GitHub Actions through OIDC: no static AWS keys anywhere
################################################################################

resource "aws_iam_openid_connect_provider" "this" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  # AWS validates GitHub's tokens against its own trust store; the API still requires a value.
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
  tags            = var.tags
}

data "aws_iam_policy_document" "assume_main" {
  for_each = var.projects

  statement {
    sid     = "GitHubActionsProjectEnvironment"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:environment:${each.key}"]
    }
  }
}

data "aws_iam_policy_document" "assume_plan" {
  statement {
    sid     = "GitHubActionsMainBranch"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [local.github_subject_main]
    }
  }
}

data "aws_iam_policy_document" "assume_pull_request" {
  statement {
    sid     = "GitHubActionsPullRequests"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [local.github_subject_pull_request]
    }
  }
}

# Main-branch role: publishes (producers), writes its own state and usage, reads everyone's interface.
resource "aws_iam_role" "main" {
  for_each = var.projects

  name                 = "${var.name_prefix}-${replace(each.key, "_", "-")}-main"
  description          = "CI of ${each.key} on ${var.github_main_branch}: build, publish and record state."
  assume_role_policy   = data.aws_iam_policy_document.assume_main[each.key].json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "main" {
  for_each = local.main_role_policies

  role       = aws_iam_role.main[each.value.project].name
  policy_arn = each.value.policy_arn
}

# Plan role: the first job of a main-branch run reads what it needs to plan, writes nothing.
resource "aws_iam_role" "plan" {
  name                 = "${var.name_prefix}-plan"
  description          = "CI of the mesh on ${var.github_main_branch}: plan which projects run (read-only)."
  assume_role_policy   = data.aws_iam_policy_document.assume_plan.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "plan" {
  role       = aws_iam_role.plan.name
  policy_arn = module.registry_bucket.iam_policy_plan_read_arn
}

# Pull-request role: reads interfaces and its own state, writes nothing.
resource "aws_iam_role" "pull_request" {
  for_each = var.projects

  name                 = "${var.name_prefix}-${replace(each.key, "_", "-")}-pr"
  description          = "CI of ${each.key} on pull requests: read-only access to the registry."
  assume_role_policy   = data.aws_iam_policy_document.assume_pull_request.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "pull_request" {
  for_each = local.pull_request_role_policies

  role       = aws_iam_role.pull_request[each.value.project].name
  policy_arn = each.value.policy_arn
}

################################################################################
# Snowflake
################################################################################

module "snowflake_warehouse" {
  source   = "./modules/snowflake_warehouse"
  for_each = local.warehouses

  providers = {
    snowflake              = snowflake
    snowflake.accountadmin = snowflake.accountadmin
  }

  name                 = each.key
  warehouse_size       = var.warehouse_size
  auto_suspend_seconds = var.warehouse_auto_suspend_seconds
  monthly_credit_quota = var.warehouse_monthly_credit_quota
}

module "snowflake_project" {
  source   = "./modules/snowflake_project"
  for_each = var.projects

  providers = {
    snowflake               = snowflake
    snowflake.securityadmin = snowflake.securityadmin
  }

  project_name                = each.key
  database_name               = each.value.database
  schemas                     = each.value.schemas
  role_name                   = each.value.role
  warehouse_name              = module.snowflake_warehouse[each.value.warehouse].warehouse_name
  service_user_name           = each.value.service_user
  service_user_rsa_public_key = lookup(var.service_user_rsa_public_keys, each.key, null)
  write_audit_publish         = var.write_audit_publish
}

module "snowflake_consumer_grants" {
  source   = "./modules/snowflake_consumer_grants"
  for_each = local.consumer_edges

  providers = {
    snowflake = snowflake.securityadmin
  }

  consumer_role_name     = module.snowflake_project[each.value.consumer].account_role_name
  producer_database_name = module.snowflake_project[each.value.producer].database_name
  # Read through the module output so the grant waits for the schema to exist.
  producer_public_schema = module.snowflake_project[each.value.producer].schema_names[var.projects[each.value.producer].public_schema]
}
