{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='partition_date',
    tags=['daily'],
) }}
{#- Clean, typed, de-duplicated behaviour events (timestamps in UTC). -#}

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
    user_id is null as is_anonymous,
    partition_date,
    source_file,
    source_line
from {{ ref('int_events_validated') }}
where reject_reason is null and not is_duplicate
{% if is_incremental() %}
  and partition_date between cast('{{ var("min_date") }}' as date) and cast('{{ var("max_date") }}' as date)
{% endif %}
