-- mesh:render-per project
-- The project's database and the three layers dbt writes to, owned by the project role because
-- dbt creates and replaces objects in them.
USE ROLE SYSADMIN;

CREATE DATABASE IF NOT EXISTS {{ database }}
  DATA_RETENTION_TIME_IN_DAYS = 1
  COMMENT = 'dbt mesh project database';

CREATE SCHEMA IF NOT EXISTS {{ database }}.RAW;
CREATE SCHEMA IF NOT EXISTS {{ database }}.STAGING;
CREATE SCHEMA IF NOT EXISTS {{ database }}.MARTS;

-- Re-granting ownership to the current owner is a no-op, so these are safe to run again.
GRANT OWNERSHIP ON SCHEMA {{ database }}.RAW TO ROLE {{ role }} COPY CURRENT GRANTS;
GRANT OWNERSHIP ON SCHEMA {{ database }}.STAGING TO ROLE {{ role }} COPY CURRENT GRANTS;
GRANT OWNERSHIP ON SCHEMA {{ database }}.MARTS TO ROLE {{ role }} COPY CURRENT GRANTS;
GRANT OWNERSHIP ON DATABASE {{ database }} TO ROLE {{ role }} COPY CURRENT GRANTS;
