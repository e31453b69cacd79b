{#- One day at a time: DuckDB deletes and re-inserts the window's days, Spark overwrites
    the partition folders of the days the window holds. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='insert_overwrite' if target.type == 'spark' else 'delete+insert',
    unique_key=none if target.type == 'spark' else 'partition_date',
    partition_by=['partition_date'] if target.type == 'spark' else none,
    tags=['daily'],
) }}
{#- Clean, typed, de-duplicated behaviour events (timestamps in UTC). Campaign message
    events are in stg_message_events; send_id is set on a purchase made from a message's
    tracked link. -#}

select
    {{ dbt.hash(dbt.concat(["cast(partition_date as " ~ dbt.type_string() ~ ")", "'|'", "source_file", "'|'", "cast(source_line as " ~ dbt.type_string() ~ ")"])) }} as event_id,
    user_id,
    item_id,
    event_type,
    event_ts,
    cast(event_ts as date) as event_date,
    {{ try_cast('coalesce(quantity, 1)', dbt.type_int()) }} as quantity,
    price,
    case when event_type = 'purchase' then coalesce(quantity, 1) * price end as revenue,
    session_id,
    search_query,
    rating,
    send_id,
    user_id is null as is_anonymous,
    partition_date,
    source_file,
    source_line
from {{ ref('int_events_validated') }}
where reject_reason is null and not is_duplicate and event_type not in ({{ message_event_types() }})
{% if is_incremental() %}
  and partition_date between cast('{{ env_var("RECS_DBT_MIN_DATE", var("min_date")) }}' as date) and cast('{{ env_var("RECS_DBT_MAX_DATE", var("max_date")) }}' as date)
{% endif %}
