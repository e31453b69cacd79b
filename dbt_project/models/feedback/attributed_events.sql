{#- Responses credited to a served recommendation, each at most once:
    a click to the latest impression of the same user and item within
    var('click_window_hours') before it; an add-to-cart or purchase to the latest
    attributed click of that item within var('click_window_hours'), or else to the
    latest impression within var('impression_window_days'). -#}

with served as (
    select * from {{ ref('served_recommendations') }}
),
responses as (
    select event_id, user_id, item_id, event_type, event_ts, revenue
    from {{ ref('stg_events') }}
    where event_type in ('click', 'add_to_cart', 'purchase') and not is_anonymous
),
clicks as (
    select r.event_id, r.user_id, r.item_id, r.event_ts, s.serve_id,
           row_number() over (partition by r.event_id order by s.served_at desc) as pick
    from responses r
    join served s
      on s.user_id = r.user_id and s.item_id = r.item_id
     and s.served_at <= r.event_ts
     and s.served_at > {{ dbt.dateadd('hour', -var('click_window_hours'), 'r.event_ts') }}
    where r.event_type = 'click'
),
attributed_clicks as (
    select event_id, user_id, item_id, event_ts, serve_id from clicks where pick = 1
),
conversions as (
    select r.event_id, r.event_type, r.event_ts, r.revenue,
           coalesce(c.serve_id, s.serve_id) as serve_id,
           case when c.serve_id is not null then 'click' else 'impression' end as via,
           row_number() over (
               partition by r.event_id
               order by case when c.serve_id is not null then 0 else 1 end,
                        coalesce(c.event_ts, s.served_at) desc
           ) as pick
    from responses r
    left join attributed_clicks c
      on c.user_id = r.user_id and c.item_id = r.item_id
     and c.event_ts <= r.event_ts
     and c.event_ts > {{ dbt.dateadd('hour', -var('click_window_hours'), 'r.event_ts') }}
    left join served s
      on s.user_id = r.user_id and s.item_id = r.item_id
     and s.served_at <= r.event_ts
     and s.served_at > {{ dbt.dateadd('day', -var('impression_window_days'), 'r.event_ts') }}
    where r.event_type in ('add_to_cart', 'purchase')
      and (c.serve_id is not null or s.serve_id is not null)
)

select c.event_id, 'click' as event_type, c.event_ts, cast(null as double) as revenue, c.serve_id, 'impression' as via
from attributed_clicks c
union all
select event_id, event_type, event_ts, revenue, serve_id, via
from conversions
where pick = 1
