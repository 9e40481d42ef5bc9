-- mesh:render-per edge
-- A consumer's way into a producer it lists in dependencies.yml: USAGE on the producer database
-- and its public schema, nothing else. USAGE shows no data. SELECT is granted per published
-- relation, never on a whole schema: the public schema also holds protected models (dbt_up's
-- customer_scoring), and ALL/FUTURE grants would let consumers read them. After each publish,
-- `invoke snowflake.grants --project <producer>` grants SELECT on exactly the relations of the
-- interface and revokes it from those no longer published (`infra.lint` refuses schema-wide
-- SELECT on a schema that holds a non-public model).
USE ROLE SECURITYADMIN;

GRANT USAGE ON DATABASE {{ producer_database }} TO ROLE {{ consumer_role }};
GRANT USAGE ON SCHEMA {{ producer_database }}.{{ producer_public_schema }} TO ROLE {{ consumer_role }};
