{#- Weak negatives from the feedback loop: (user, item) pairs that were shown but never
    clicked, carted or bought, and that have no positive interaction at all (not even a
    view). A loss that accepts negatives (LightFM 'logistic') trains on them; WARP and
    BPR sample their own negatives and ignore this table. -#}

with impressions as (
    select user_id, item_id, max(event_ts) as last_shown_ts, count(*) as n_impressions
    from {{ ref('stg_events') }}
    where event_type = 'impression' and not is_anonymous
    group by user_id, item_id
),
responses as (
    select distinct user_id, item_id
    from {{ ref('stg_events') }}
    where event_type in ('click', 'add_to_cart', 'purchase') and not is_anonymous
)

select i.user_id, i.item_id, i.n_impressions, i.last_shown_ts
from impressions i
left join responses r on r.user_id = i.user_id and r.item_id = i.item_id
left join {{ ref('interactions') }} p on p.user_id = i.user_id and p.item_id = i.item_id
where r.user_id is null and p.user_id is null
