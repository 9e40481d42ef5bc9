provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      project    = "dbt-mesh"
      managed_by = "terraform"
    }
  }
}

# Connection settings come from the environment, so no credential is ever written here:
# SNOWFLAKE_ORGANIZATION_NAME, SNOWFLAKE_ACCOUNT_NAME, SNOWFLAKE_USER, SNOWFLAKE_PRIVATE_KEY and,
# for an encrypted key, SNOWFLAKE_PRIVATE_KEY_PASSPHRASE. The user needs the three roles below.
provider "snowflake" {
  authenticator = "SNOWFLAKE_JWT"
  role          = "SYSADMIN"
}

provider "snowflake" {
  alias         = "securityadmin"
  authenticator = "SNOWFLAKE_JWT"
  role          = "SECURITYADMIN"
}

provider "snowflake" {
  alias         = "accountadmin"
  authenticator = "SNOWFLAKE_JWT"
  role          = "ACCOUNTADMIN"
}
