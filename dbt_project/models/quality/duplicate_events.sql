{#- One day at a time: DuckDB deletes and re-inserts the window's days, Spark overwrites
    the partition folders of the days the window holds. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='insert_overwrite' if target.type == 'spark' else 'delete+insert',
    unique_key=none if target.type == 'spark' else 'partition_date',
    partition_by=['partition_date'] if target.type == 'spark' else none,
    tags=['daily'],
) }}
{#- Exact repeats of a valid event in the same day's file: dropped from stg_events, kept
    here so that nothing disappears (first_source_line is the copy that was kept). -#}

select partition_date, source_file, source_line, first_source_line, user_id, item_id, event_type, event_ts
from {{ ref('int_events_validated') }}
where is_duplicate
{% if is_incremental() %}
  and partition_date between cast('{{ env_var("RECS_DBT_MIN_DATE", var("min_date")) }}' as date) and cast('{{ env_var("RECS_DBT_MAX_DATE", var("max_date")) }}' as date)
{% endif %}
