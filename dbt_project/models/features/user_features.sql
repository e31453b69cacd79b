{#- One row per known user: profile attributes and behaviour aggregates. Users seen in
    events but absent from the user snapshot are kept with NULL attributes. -#}

with activity as (
    select
        user_id,
        count(*) as n_events,
        count(distinct session_id) as n_sessions,
        sum(case when event_type = 'purchase' then 1 else 0 end) as n_purchases,
        count(distinct case when event_type = 'purchase' then item_id end) as n_items_purchased,
        round(sum(coalesce(revenue, 0)), 6) as revenue,
        min(event_ts) as first_seen_ts,
        max(event_ts) as last_seen_ts,
        max(case when event_type = 'purchase' then event_ts end) as last_purchase_ts
    from {{ ref('stg_events') }}
    where not is_anonymous
    group by user_id
),
all_users as (
    select user_id from {{ ref('stg_users') }}
    union
    select user_id from activity
)

select
    a.user_id,
    u.signup_date,
    u.age_band,
    u.gender,
    u.country,
    u.segment,
    coalesce(u.marketing_consent, false) as marketing_consent,
    coalesce(x.n_events, 0) as n_events,
    coalesce(x.n_sessions, 0) as n_sessions,
    coalesce(x.n_purchases, 0) as n_purchases,
    coalesce(x.n_items_purchased, 0) as n_items_purchased,
    coalesce(x.revenue, 0) as revenue,
    x.first_seen_ts,
    x.last_seen_ts,
    x.last_purchase_ts
from all_users a
left join {{ ref('stg_users') }} u on u.user_id = a.user_id
left join activity x on x.user_id = a.user_id
