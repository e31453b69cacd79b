{#- One row per user assigned to the experiment: what they were shown and did while it ran.
    Users who did nothing are kept with zeros (dropping them would inflate the rates).
    Purchases and revenue count every purchase in the experiment period, attributed or not,
    so that the hold-out group (shown nothing) can be compared too. -#}

with assignments as (
    select user_id, variant, experiment_id from {{ source('serving', 'experiment_assignments') }}
),
period as (
    select min(list_date) as first_day from {{ source('serving', 'published_recommendations') }}
),
served as (
    select user_id, count(*) as impressions from {{ ref('served_recommendations') }} group by user_id
),
clicks as (
    select s.user_id, count(*) as clicks
    from {{ ref('attributed_events') }} a join {{ ref('served_recommendations') }} s using (serve_id)
    where a.event_type = 'click'
    group by s.user_id
),
purchases as (
    select e.user_id, count(*) as purchases, round(sum(coalesce(e.revenue, 0)), 6) as revenue
    from {{ ref('stg_events') }} e cross join period p
    where e.event_type = 'purchase' and not e.is_anonymous and e.event_date >= p.first_day
    group by e.user_id
)

select
    a.user_id,
    a.variant,
    a.experiment_id,
    coalesce(s.impressions, 0) as impressions,
    coalesce(c.clicks, 0) as clicks,
    coalesce(p.purchases, 0) as purchases,
    coalesce(p.revenue, 0) as revenue
from assignments a
left join served s on s.user_id = a.user_id
left join clicks c on c.user_id = a.user_id
left join purchases p on p.user_id = a.user_id
