-- mesh:render-per project
-- Write-audit-publish on Snowflake (mesh/snowflake_wap.py) builds into a zero-copy clone of the
-- project database, `<DATABASE>__AUDIT`, and swaps it in once the build and its tests passed.
-- The project role creates the clone, so it needs CREATE DATABASE on the account: it owns what it
-- creates and reads nothing it does not own. Leave this script out with
-- `invoke snowflake.setup --skip-wap` when mesh.yml sets `wap: false` for the Snowflake target.
USE ROLE SECURITYADMIN;

GRANT CREATE DATABASE ON ACCOUNT TO ROLE {{ role }};
