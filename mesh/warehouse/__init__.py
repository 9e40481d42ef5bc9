"""Layer 3, dbt and the warehouse: running dbt in-process (`runner`), its packages, the profile
output a build gets (`outputs`), write-audit-publish (`wap`, `snowflake_wap`), reading what a
build wrote (`readers`) and Snowflake sessions and grants (`snowflake`)."""
