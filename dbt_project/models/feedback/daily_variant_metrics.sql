{#- Per day x variant x list position: what was shown and what it earned. Impressions
    here equal the rows of served_recommendations; every response is counted once. -#}

with served as (
    select * from {{ ref('served_recommendations') }}
),
responses as (
    select
        serve_id,
        sum(case when event_type = 'click' then 1 else 0 end) as clicks,
        sum(case when event_type = 'add_to_cart' then 1 else 0 end) as add_to_carts,
        sum(case when event_type = 'purchase' then 1 else 0 end) as purchases,
        round(sum(case when event_type = 'purchase' then coalesce(revenue, 0) else 0 end), 6) as revenue
    from {{ ref('attributed_events') }}
    group by serve_id
)

select
    s.served_date,
    s.variant,
    s.experiment_id,
    s.rank as position,
    count(*) as impressions,
    count(distinct s.user_id) as users,
    coalesce(sum(r.clicks), 0) as clicks,
    coalesce(sum(r.add_to_carts), 0) as add_to_carts,
    coalesce(sum(r.purchases), 0) as purchases,
    coalesce(sum(r.revenue), 0) as revenue,
    -- Doubles on every engine (an integer * 1.0 is a DECIMAL on Spark).
    cast(coalesce(sum(r.clicks), 0) as {{ type_double() }}) / count(*) as ctr,
    cast(coalesce(sum(r.purchases), 0) as {{ type_double() }}) / count(*) as conversion_per_impression,
    coalesce(sum(r.revenue), 0) * 1.0 / count(distinct s.user_id) as revenue_per_user
from served s
left join responses r on r.serve_id = s.serve_id
group by s.served_date, s.variant, s.experiment_id, s.rank
