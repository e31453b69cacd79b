{#- What was shown to whom: every impression event, matched to the list that was in
    force that day (the newest list published on or before the impression's day). An
    impression of an item no published list holds keeps variant 'unattributed'. -#}

with impressions as (
    select event_id, user_id, item_id, event_ts, event_date
    from {{ ref('stg_events') }}
    where event_type = 'impression' and not is_anonymous
),
candidates as (
    select
        i.event_id, i.user_id, i.item_id, i.event_ts,
        p.rank, p.strategy, p.variant, p.experiment_id, p.list_date,
        row_number() over (partition by i.event_id order by p.list_date desc) as newest
    from impressions i
    left join {{ source('serving', 'published_recommendations') }} p
      on p.user_id = i.user_id and p.item_id = i.item_id and p.list_date <= i.event_date
)

select
    event_id as serve_id,
    user_id,
    item_id,
    rank,
    coalesce(strategy, 'unknown') as strategy,
    coalesce(variant, 'unattributed') as variant,
    experiment_id,
    list_date,
    event_ts as served_at,
    cast(event_ts as date) as served_date
from candidates
where newest = 1
