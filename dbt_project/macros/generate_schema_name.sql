{# Use the layer name (staging, quality, features) as the schema itself instead of
   dbt's default "<target schema>_<layer>", so SQL users query features.interactions. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
