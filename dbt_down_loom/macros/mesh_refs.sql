{#-
    References to this project's own relations are rendered without the database on Snowflake.

    Write-audit-publish (mesh/snowflake_wap.py) builds the project into a zero-copy clone of its
    database, <DATABASE>__AUDIT, and swaps it in once the build and its tests passed. Snowflake
    keeps a view's SQL as it was written: with the database in it, a view built in the clone would
    go on reading <DATABASE>__AUDIT after the swap. Without it, Snowflake resolves the name in the
    view's own database, whatever that database is called by then. Tables and tests resolve it in
    the session's database, which is the one dbt builds into.

    Only references into the database dbt builds into lose it: upstream projects (dbt-loom refs,
    generated sources) and sources elsewhere keep theirs. Other adapters (DuckDB locally) render
    exactly as dbt does. The mesh refuses to promote an audit build whose views name the audit
    database, so removing this file turns write-audit-publish off in practice, not silently wrong.
    See README, Production, "Write-audit-publish on Snowflake".
-#}
{% macro ref() %}
    {%- set version = kwargs.get('version') or kwargs.get('v') -%}
    {%- if varargs | length == 1 -%}
        {%- set relation = builtins.ref(varargs[0], version=version) -%}
    {%- else -%}
        {%- set relation = builtins.ref(varargs[0], varargs[1], version=version) -%}
    {%- endif -%}
    {{ return(mesh_without_own_database(relation)) }}
{% endmacro %}

{% macro source(source_name, table_name) %}
    {{ return(mesh_without_own_database(builtins.source(source_name, table_name))) }}
{% endmacro %}

{% macro mesh_without_own_database(relation) %}
    {%- if target.type == 'snowflake' and relation is not none and relation.database
          and (relation.database | upper) == (target.database | upper) -%}
        {{ return(relation.include(database=false)) }}
    {%- endif -%}
    {{ return(relation) }}
{% endmacro %}
