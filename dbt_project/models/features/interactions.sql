{#- One row per (user, item): a time-decayed, event-weighted implicit-feedback strength
    plus the counts behind it. Anonymous events never reach here. The decay reference is
    the newest event, not now(), so a rebuild from the same data gives the same table. -#}

with events as (
    select * from {{ ref('stg_events') }}
    where not is_anonymous and item_id is not null
),
reference as (
    select max(event_ts) as ref_ts from events
),
weighted as (
    select
        e.*,
        {{ event_weight('e.event_type', 'e.rating') }}
          * power(0.5, cast({{ dbt.datediff('e.event_ts', 'r.ref_ts', 'hour') }} as {{ type_double() }}) / (24.0 * {{ var('decay_half_life_days') }}))
          as decayed_weight
    from events e cross join reference r
)

select
    user_id,
    item_id,
    -- Rounded: a parallel sum of doubles may differ in the last bits from run to run,
    -- and a rebuild from the same data must give the same table.
    round(sum(decayed_weight), 9) as weight,
    count(*) as n_events,
    sum(case when event_type = 'view' then 1 else 0 end) as n_views,
    sum(case when event_type = 'click' then 1 else 0 end) as n_clicks,
    sum(case when event_type = 'add_to_cart' then 1 else 0 end) as n_carts,
    sum(case when event_type = 'purchase' then 1 else 0 end) as n_purchases,
    sum(case when event_type = 'purchase' then quantity else 0 end) as quantity_purchased,
    round(sum(coalesce(revenue, 0)), 6) as revenue,
    max(rating) as rating,
    min(event_ts) as first_event_ts,
    max(event_ts) as last_event_ts,
    max(case when event_type = 'purchase' then event_ts end) as last_purchase_ts
from weighted
group by user_id, item_id
having sum(decayed_weight) > 0
