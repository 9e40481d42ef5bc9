-- mesh:render-per edge
-- Read access of a consumer to the public schema of a producer it lists in dependencies.yml.
-- USAGE and SELECT only, and only on the public schema: never RAW or STAGING, never a write.
-- For access to the published relations only, run `invoke snowflake.setup --skip-consumer-grants`
-- and then `invoke snowflake.grants --project <producer>`.
USE ROLE SECURITYADMIN;

GRANT USAGE ON DATABASE {{ producer_database }} TO ROLE {{ consumer_role }};
GRANT USAGE ON SCHEMA {{ producer_database }}.{{ producer_public_schema }} TO ROLE {{ consumer_role }};

GRANT SELECT ON ALL TABLES IN SCHEMA {{ producer_database }}.{{ producer_public_schema }} TO ROLE {{ consumer_role }};
GRANT SELECT ON ALL VIEWS IN SCHEMA {{ producer_database }}.{{ producer_public_schema }} TO ROLE {{ consumer_role }};

-- dbt replaces tables on every run; future grants keep the replacements readable.
GRANT SELECT ON FUTURE TABLES IN SCHEMA {{ producer_database }}.{{ producer_public_schema }} TO ROLE {{ consumer_role }};
GRANT SELECT ON FUTURE VIEWS IN SCHEMA {{ producer_database }}.{{ producer_public_schema }} TO ROLE {{ consumer_role }};
