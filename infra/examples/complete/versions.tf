terraform {
  # 1.9: variable validations that read other variables (name lengths AWS limits).
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
    snowflake = {
      source  = "snowflakedb/snowflake"
      version = ">= 2.0.0, < 3.0.0"
    }
  }
}
