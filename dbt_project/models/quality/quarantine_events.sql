{#- One day at a time: DuckDB deletes and re-inserts the window's days, Spark overwrites
    the partition folders of the days the window holds. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='insert_overwrite' if target.type == 'spark' else 'delete+insert',
    unique_key=none if target.type == 'spark' else 'partition_date',
    partition_by=['partition_date'] if target.type == 'spark' else none,
    tags=['daily'],
) }}
{#- Every raw event row that failed validation, with the rule it broke and where it came from. -#}

select
    partition_date,
    source_file,
    source_line,
    reject_reason,
    parse_error,
    user_id,
    item_id,
    event_type,
    event_ts_text as event_ts,
    quantity_text as quantity,
    price_text as price,
    session_id,
    raw_line
from {{ ref('int_events_validated') }}
where reject_reason is not null
{% if is_incremental() %}
  and partition_date between cast('{{ env_var("RECS_DBT_MIN_DATE", var("min_date")) }}' as date) and cast('{{ env_var("RECS_DBT_MAX_DATE", var("max_date")) }}' as date)
{% endif %}
