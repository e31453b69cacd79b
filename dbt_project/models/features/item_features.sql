{#- One row per item: catalogue attributes, a price band within its category, and
    behaviour aggregates. Items seen in events but missing from the catalogue are kept
    (attributes NULL) so that a recommender can still use their ids. -#}

with activity as (
    select
        item_id,
        count(*) as n_events,
        sum(case when event_type = 'view' then 1 else 0 end) as n_views,
        sum(case when event_type = 'add_to_cart' then 1 else 0 end) as n_carts,
        sum(case when event_type = 'purchase' then 1 else 0 end) as n_purchases,
        count(distinct case when event_type = 'purchase' then coalesce(user_id, session_id) end) as n_buyers,
        round(sum(coalesce(revenue, 0)), 6) as revenue,
        min(event_ts) as first_event_ts,
        max(event_ts) as last_event_ts
    from {{ ref('stg_events') }}
    where item_id is not null
    group by item_id
),
all_items as (
    select item_id from {{ ref('stg_items') }}
    union
    select item_id from activity
)

select
    a.item_id,
    i.title,
    i.category,
    i.brand,
    i.price,
    case when i.price is not null then ntile(5) over (partition by i.category, i.price is null order by i.price, a.item_id) end as price_band,
    i.description,
    coalesce(i.in_stock, true) as in_stock,
    i.launch_date,
    i.item_id is not null as in_catalogue,
    coalesce(x.n_events, 0) as n_events,
    coalesce(x.n_views, 0) as n_views,
    coalesce(x.n_carts, 0) as n_carts,
    coalesce(x.n_purchases, 0) as n_purchases,
    coalesce(x.n_buyers, 0) as n_buyers,
    coalesce(x.revenue, 0) as revenue,
    x.first_event_ts,
    x.last_event_ts
from all_items a
left join {{ ref('stg_items') }} i on i.item_id = a.item_id
left join activity x on x.item_id = a.item_id
