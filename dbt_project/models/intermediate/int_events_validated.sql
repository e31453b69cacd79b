{#- One day at a time: DuckDB deletes and re-inserts the window's days, Spark overwrites
    the partition folders of the days the window holds. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='insert_overwrite' if target.type == 'spark' else 'delete+insert',
    unique_key=none if target.type == 'spark' else 'partition_date',
    partition_by=['partition_date'] if target.type == 'spark' else none,
    tags=['daily'],
) }}
{#- Every raw event row, typed, with the first rule it breaks (reject_reason) and
    whether it repeats an earlier valid row of the same day (is_duplicate).
    stg_events, quarantine_events and duplicate_events are disjoint slices of this. -#}

with raw_events as (
    select *
    from {{ source('raw', 'events') }}
    {% if is_incremental() %}
    where partition_date between cast('{{ env_var("RECS_DBT_MIN_DATE", var("min_date")) }}' as date) and cast('{{ env_var("RECS_DBT_MAX_DATE", var("max_date")) }}' as date)
    {% endif %}
),

catalogue as (
    select distinct trim(item_id) as item_id from {{ source('raw', 'items') }} where item_id is not null
),

typed as (
    select
        r.partition_date,
        r.source_file,
        r.source_line,
        r.parse_error,
        r.raw_line,
        nullif(trim(r.user_id), '') as user_id,
        nullif(trim(r.item_id), '') as item_id,
        lower(nullif(trim(r.event_type), '')) as event_type,
        r.event_ts as event_ts_text,
        {{ parse_utc_timestamp('r.event_ts', var('source_timezone'), var('timestamp_formats', [])) }} as event_ts,
        r.quantity as quantity_text,
        r.price as price_text,
        case when {{ is_number('r.quantity') }} then {{ try_cast('trim(r.quantity)', type_double()) }} end as quantity,
        case when {{ is_number('r.price') }} then {{ try_cast('trim(r.price)', type_double()) }} end as price,
        case when {{ is_number('r.rating') }} then {{ try_cast('trim(r.rating)', type_double()) }} end as rating,
        nullif(trim(r.session_id), '') as session_id,
        nullif(trim(r.search_query), '') as search_query,
        nullif(trim(r.send_id), '') as send_id,
        r.rating as rating_text,
        c.item_id is not null as item_in_catalogue,
        (select count(*) from catalogue) > 0 as has_catalogue
    from raw_events r
    left join catalogue c on c.item_id = trim(r.item_id)
),

flagged as (
    select
        *,
        case
            {# The loader flags user ids that cannot be ids before pseudonymising them
               (recs_pipeline.sources.base.with_user_id_checks). #}
            when parse_error like 'invalid_id:%' then 'invalid_id'
            when parse_error like 'oversized_field:%' then 'oversized_field'
            when parse_error is not null then 'malformed_line'
            when event_type = 'adjustment' then 'not_shopper_behaviour'
            when {{ has_control_chars('user_id') }} or {{ has_control_chars('item_id') }}
                 or {{ has_control_chars('session_id') }} or {{ has_control_chars('send_id') }} then 'invalid_id'
            when {{ dbt.length('user_id') }} > 256 or {{ dbt.length('item_id') }} > 256
                 or {{ dbt.length('session_id') }} > 256 or {{ dbt.length('send_id') }} > 256 or {{ dbt.length('search_query') }} > 1000
                then 'oversized_field'
            when user_id is null and not (
                '{{ var("anonymous_events") }}' = 'anonymous' and event_type in ('purchase', 'return', 'view')
            ) then 'missing_user_id'
            when event_type is null or event_type not in (
                'view', 'search', 'add_to_cart', 'remove_from_cart', 'purchase', 'return', 'rating', 'impression', 'click',
                {{ message_event_types() }}
            ) then 'unknown_event_type'
            {#- A campaign message is about the user, not one item (a click may name the item). #}
            when item_id is null and event_type <> 'search' and event_type not in ({{ message_event_types() }})
                then 'missing_item_id'
            when event_ts is null then 'unparseable_timestamp'
            when event_ts >= {{ dbt.dateadd('day', 2, 'cast(partition_date as ' ~ dbt.type_timestamp() ~ ')') }}
                then 'future_timestamp'
            when event_ts < {{ dbt.dateadd('day', -var('max_event_age_days'), 'cast(partition_date as ' ~ dbt.type_timestamp() ~ ')') }}
                then 'timestamp_out_of_range'
            when price_text is not null and trim(price_text) <> '' and price is null then 'invalid_price'
            when price < 0 then 'negative_price'
            when price > 1000000 then 'invalid_price'
            when quantity_text is not null and trim(quantity_text) <> '' and quantity is null then 'invalid_quantity'
            when quantity <= 0 or quantity > 100000 or quantity <> floor(quantity) then 'invalid_quantity'
            when event_type = 'rating' and rating is null then 'invalid_rating'
            when event_type <> 'search' and item_id is not null and has_catalogue and not item_in_catalogue
                then 'unknown_item'
        end as reject_reason
    from typed
)

select
    *,
    reject_reason is null and row_number() over (
        partition by reject_reason is null, partition_date, user_id, item_id, event_type, event_ts_text,
                     quantity_text, price_text, session_id, search_query, rating_text, send_id
        order by source_line
    ) > 1 as is_duplicate,
    min(source_line) over (
        partition by reject_reason is null, partition_date, user_id, item_id, event_type, event_ts_text,
                     quantity_text, price_text, session_id, search_query, rating_text, send_id
    ) as first_source_line
from flagged
