{#- One day at a time on DuckDB, as stg_events. On Spark a whole (small) table rebuilt
    from int_events_validated each run: a shop without message events would leave an
    empty partitioned folder (a dynamic overwrite writes no file, not even the schema),
    which the next process cannot register, and every later model reading it would fail. -#}
{{ config(
    materialized='table' if target.type == 'spark' else 'incremental',
    incremental_strategy=none if target.type == 'spark' else 'delete+insert',
    unique_key=none if target.type == 'spark' else 'partition_date',
    tags=['daily'],
) }}
{#- Clean, de-duplicated campaign message events from the shop's e-mail or push tool:
    message_sent, message_open, message_click and unsubscribe, with the send they answer
    (send_id, when the tool knows it). feedback attributes them to marketing.campaign_sends. -#}

select
    {{ dbt.hash(dbt.concat(["cast(partition_date as " ~ dbt.type_string() ~ ")", "'|'", "source_file", "'|'", "cast(source_line as " ~ dbt.type_string() ~ ")"])) }} as event_id,
    user_id,
    send_id,
    event_type,
    event_ts,
    cast(event_ts as date) as event_date,
    item_id,
    partition_date,
    source_file,
    source_line
from {{ ref('int_events_validated') }}
where reject_reason is null and not is_duplicate and event_type in ({{ message_event_types() }})
{% if is_incremental() %}
  and partition_date between cast('{{ env_var("RECS_DBT_MIN_DATE", var("min_date")) }}' as date) and cast('{{ env_var("RECS_DBT_MAX_DATE", var("max_date")) }}' as date)
{% endif %}
