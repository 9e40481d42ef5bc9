{#-
    Use a configured custom schema name exactly as written (`raw`, `staging`,
    `marts`, ...) instead of dbt's default `<target.schema>_<custom>`, and fall
    back to the target's schema when a node sets no custom schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
