{#- Lists for shoppers the pipeline has never seen (a customer who first appears after
    the last run): the most bought in-stock items of the last `fallback_window_days`
    days, by distinct buyers, per country, age band and segment, and one global list.
    A front end shows the user's own list from serving.recommendations, else the list of
    what it knows of the shopper (country, ...), else the global one (docs/tables.md). -#}

with last_day as (
    select max(event_date) as last_day from {{ ref('stg_events') }}
),
recent as (
    select distinct e.user_id, e.item_id
    from {{ ref('stg_events') }} e
    cross join last_day d
    where e.event_type = 'purchase' and not e.is_anonymous and e.item_id is not null
      and e.event_date > {{ dbt.dateadd('day', -var('fallback_window_days'), 'd.last_day') }}
),
buyers as (
    select r.item_id, u.country, u.age_band, u.segment, r.user_id
    from recent r
    join {{ ref('item_features') }} i on i.item_id = r.item_id and i.in_stock
    left join {{ ref('user_features') }} u on u.user_id = r.user_id
),
counted as (
    select 'global' as segment_kind, '*' as segment_value, item_id, count(distinct user_id) as buyers
    from buyers group by item_id
    union all
    select 'country', country, item_id, count(distinct user_id) from buyers where country is not null group by country, item_id
    union all
    select 'age_band', age_band, item_id, count(distinct user_id) from buyers where age_band is not null group by age_band, item_id
    union all
    select 'segment', segment, item_id, count(distinct user_id) from buyers where segment is not null group by segment, item_id
),
ranked as (
    select *, row_number() over (partition by segment_kind, segment_value order by buyers desc, item_id) as rank
    from counted
)

select
    segment_kind,
    segment_value,
    cast(rank as {{ dbt.type_int() }}) as rank,
    item_id,
    buyers,
    case when segment_kind = 'global'
         then 'Popular with shoppers in the last {{ var("fallback_window_days") }} days'
         else 'Popular with shoppers of your ' || replace(segment_kind, '_', ' ') || ' (' || segment_value
              || ') in the last {{ var("fallback_window_days") }} days'
    end as reason
from ranked
where rank <= {{ var('top_n') }}
