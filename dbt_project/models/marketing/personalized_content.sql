{#- Ready-to-send campaign content: per consenting user and channel, a headline for
    their primary segment and their top recommendations (title and price), leaving out
    anything they bought in the last var('recently_bought_days') days. -#}

with reference as (
    select max(event_ts) as ref_ts from {{ ref('stg_events') }}
),
audience as (
    select u.user_id, s.segment, s.favourite_category
    from {{ ref('user_features') }} u
    join {{ ref('segments') }} s on s.user_id = u.user_id and s.is_primary
    where u.marketing_consent
),
recently_bought as (
    select distinct e.user_id, e.item_id
    from {{ ref('stg_events') }} e cross join reference r
    where e.event_type = 'purchase'
      and e.event_ts >= {{ dbt.dateadd('day', -var('recently_bought_days'), 'r.ref_ts') }}
),
channels as (
    select 'email' as channel, 3 as n_items
    union all
    select 'home_page', 5
),
candidates as (
    select
        a.user_id, a.segment, a.favourite_category, c.channel, r.item_id, r.reason, i.title, i.price,
        row_number() over (partition by a.user_id, c.channel order by r.rank) as position
    from audience a
    cross join channels c
    join {{ source('serving', 'recommendations') }} r on r.user_id = a.user_id
    join {{ ref('item_features') }} i on i.item_id = r.item_id
    left join recently_bought b on b.user_id = r.user_id and b.item_id = r.item_id
    where b.item_id is null
),
picked as (
    select cand.* from candidates cand join channels c on c.channel = cand.channel
    where cand.position <= c.n_items
)

select
    user_id,
    channel,
    case segment
        when 'new_user' then 'Welcome! A few picks to get you started'
        when 'lapsed_customer' then 'We miss you: new ' || coalesce(favourite_category, 'favourites') || ' picked for you'
        when 'high_value' then 'Hand-picked for one of our best customers'
        when 'category_lover' then 'More ' || coalesce(favourite_category, 'of what you love') || ' you will like'
        else 'Recommended for you this week'
    end as headline,
    {{ items_json('item_id', 'title', 'price', 'position') }} as items,
    max(case when position = 1 then reason end) as reason,
    segment
from picked
group by user_id, channel, segment, favourite_category
