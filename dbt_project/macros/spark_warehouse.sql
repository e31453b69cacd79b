{# The Spark target's storage convention, shared with recs_pipeline.engine.spark: table
   schema.name is Parquet at <RECS_SPARK_WAREHOUSE>/<schema>.db/<name>/, and every
   process registers those folders in its own in-memory catalog (no metastore). #}

{# on-run-start: register the tables the pipeline has already written (var spark_tables,
   "schema.table" strings; the caller lists the folders that exist). The relation cache
   is filled before this hook runs, so each table is added to it too: otherwise an
   incremental model would not see its own table and would rebuild it from the window. #}
{% macro register_spark_tables() %}
  {%- if target.type == 'spark' -%}
    {%- for name in var('spark_tables', []) -%}
      {%- if not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*', name) -%}
        {{ exceptions.raise_compiler_error("spark_tables: '" ~ name ~ "' is not a schema.table name") }}
      {%- endif -%}
      {%- set schema_name, table_name = name.split('.') -%}
      {% do run_query('create schema if not exists ' ~ schema_name) %}
      {% do run_query('create table if not exists ' ~ name ~ ' using parquet location ' ~ spark_table_location(schema_name, table_name)) %}
      {% do adapter.cache_added(api.Relation.create(schema=schema_name, identifier=table_name, type='table')) %}
    {%- endfor -%}
  {%- endif -%}
{% endmacro %}

{# The quoted folder of a table in the warehouse. #}
{% macro spark_table_location(schema_name, table_name) -%}
  '{{ (env_var('RECS_SPARK_WAREHOUSE') | replace('\\', '\\\\') | replace("'", "\\'")) ~ '/' ~ schema_name ~ '.db/' ~ table_name }}'
{%- endmacro %}

{# dbt-spark writes a table to LOCATION only when location_root is set, and then as
   <root>/<name> for every schema: put each model at its place in the convention. #}
{% macro spark__location_clause() -%}
  location {{ spark_table_location(model['schema'], model['alias']) }}
{%- endmacro %}

{# DuckDB's date_diff counts the unit boundaries crossed (10:59 -> 11:01 is 1 hour);
   dbt-spark's version rounds the elapsed time up instead. #}
{% macro spark__datediff(first_date, second_date, datepart) -%}
  {%- set unit = datepart | lower -%}
  {%- if unit == 'day' -%}
    datediff(cast({{ second_date }} as date), cast({{ first_date }} as date))
  {%- elif unit in ('hour', 'minute', 'second') -%}
    {%- set seconds = {'hour': 3600, 'minute': 60, 'second': 1}[unit] -%}
    ((unix_seconds(date_trunc('{{ unit }}', cast({{ second_date }} as timestamp)))
      - unix_seconds(date_trunc('{{ unit }}', cast({{ first_date }} as timestamp)))) div {{ seconds }})
  {%- else -%}
    {{ exceptions.raise_compiler_error("datediff: unit '" ~ datepart ~ "' is not implemented for Spark in this project") }}
  {%- endif -%}
{%- endmacro %}

{# DuckDB's ts + interval keeps the time of day and the microseconds, and a date plus an
   interval is a timestamp; dbt-spark's version goes through whole seconds. #}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
  timestampadd({{ datepart | upper }}, cast({{ interval }} as bigint), {{ from_date_or_timestamp }})
{%- endmacro %}
