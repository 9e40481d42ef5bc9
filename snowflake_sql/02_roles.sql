-- mesh:render-per project
-- The project's functional role. Granted to SYSADMIN so administrators (and Terraform) keep
-- control of everything the role owns.
USE ROLE SECURITYADMIN;

CREATE ROLE IF NOT EXISTS {{ role }}
  COMMENT = 'dbt mesh functional role';

GRANT ROLE {{ role }} TO ROLE SYSADMIN;

GRANT USAGE ON WAREHOUSE {{ warehouse }} TO ROLE {{ role }};
