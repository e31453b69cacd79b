{#- Marketing segments, one row per (user, segment); a user can be in several. The
    reference day is the newest event, so rebuilding from the same data gives the same
    table. `priority` orders a user's segments (1 = the one campaigns address first). -#}

with reference as (
    select max(event_date) as ref_date from {{ ref('stg_events') }}
),
users as (
    select u.*, r.ref_date from {{ ref('user_features') }} u cross join reference r
),
category_share as (
    select
        e.user_id,
        i.category,
        count(*) as n_purchases,
        cast(count(*) as {{ type_double() }}) / sum(count(*)) over (partition by e.user_id) as share
    from {{ ref('stg_events') }} e
    join {{ ref('item_features') }} i on i.item_id = e.item_id
    where e.event_type = 'purchase' and not e.is_anonymous and i.category is not null
    group by e.user_id, i.category
),
top_category as (
    select user_id, category, share, n_purchases
    from (
        select *, row_number() over (partition by user_id order by share desc, category) as rn
        from category_share
    ) c
    where rn = 1
),
revenue_rank as (
    select user_id, percent_rank() over (order by revenue) as revenue_pct
    from users where revenue > 0
),
memberships as (
    select user_id, 'new_user' as segment, 1 as priority,
           'signed up or first seen in the last 14 days' as rule
    from users
    where coalesce(signup_date, cast(first_seen_ts as date)) >= {{ dbt.dateadd('day', -14, 'ref_date') }}
    union all
    select user_id, 'lapsed_customer', 2, 'bought before, no purchase in the last 30 days'
    from users
    where n_purchases >= 1 and cast(last_purchase_ts as date) < {{ dbt.dateadd('day', -30, 'ref_date') }}
    union all
    select r.user_id, 'high_value', 3, 'top 10% of customers by revenue'
    from revenue_rank r where r.revenue_pct >= 0.9
    union all
    select t.user_id, 'category_lover', 4, 'at least 60% of 3+ purchases in ' || t.category
    from top_category t
    where t.share >= 0.6 and (select sum(n_purchases) from category_share c where c.user_id = t.user_id) >= 3
    union all
    select user_id, 'active_shopper', 5, 'everyone else with activity'
    from users where n_events > 0
)

select
    m.user_id,
    m.segment,
    m.priority,
    m.rule,
    t.category as favourite_category,
    row_number() over (partition by m.user_id order by m.priority) = 1 as is_primary
from memberships m
left join top_category t on t.user_id = m.user_id
