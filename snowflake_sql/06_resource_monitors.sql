-- mesh:render-per warehouse
-- A monthly credit cap per warehouse. Only ACCOUNTADMIN can create and assign resource monitors;
-- skip this script with `invoke snowflake.setup --skip-resource-monitors` if you lack it.
USE ROLE ACCOUNTADMIN;

CREATE RESOURCE MONITOR IF NOT EXISTS {{ resource_monitor }} WITH
  CREDIT_QUOTA = 20
  TRIGGERS
    ON 75 PERCENT DO NOTIFY
    ON 90 PERCENT DO NOTIFY
    ON 100 PERCENT DO SUSPEND
    ON 110 PERCENT DO SUSPEND_IMMEDIATE;

ALTER WAREHOUSE IF EXISTS {{ warehouse }} SET RESOURCE_MONITOR = {{ resource_monitor }};
