-- mesh:render-per warehouse
-- One warehouse per distinct `warehouse` in mesh.yml (the consumers share one).
-- XSMALL bills 1 credit per running hour; suspended after 60 idle seconds, it costs nothing.
USE ROLE SYSADMIN;

CREATE WAREHOUSE IF NOT EXISTS {{ warehouse }}
  WAREHOUSE_SIZE = 'XSMALL'
  AUTO_SUSPEND = 60
  AUTO_RESUME = TRUE
  INITIALLY_SUSPENDED = TRUE
  COMMENT = 'dbt mesh warehouse';

-- IF NOT EXISTS leaves an existing warehouse untouched; this brings its settings back in line.
ALTER WAREHOUSE IF EXISTS {{ warehouse }} SET
  WAREHOUSE_SIZE = 'XSMALL'
  AUTO_SUSPEND = 60
  AUTO_RESUME = TRUE;
