{#- Per loaded day: raw rows = clean + quarantined + duplicates. A row with
    is_balanced = false means a row was lost or counted twice. -#}

with raw_counts as (
    select partition_date, count(*) as raw_rows from {{ source('raw', 'events') }} group by partition_date
),
clean as (
    select partition_date, count(*) as clean_rows from {{ ref('stg_events') }} group by partition_date
),
quarantined as (
    select partition_date, count(*) as quarantined_rows from {{ ref('quarantine_events') }} group by partition_date
),
duplicates as (
    select partition_date, count(*) as duplicate_rows from {{ ref('duplicate_events') }} group by partition_date
)

select
    r.partition_date,
    r.raw_rows,
    coalesce(c.clean_rows, 0) as clean_rows,
    coalesce(q.quarantined_rows, 0) as quarantined_rows,
    coalesce(d.duplicate_rows, 0) as duplicate_rows,
    r.raw_rows = coalesce(c.clean_rows, 0) + coalesce(q.quarantined_rows, 0) + coalesce(d.duplicate_rows, 0) as is_balanced
from raw_counts r
left join clean c on c.partition_date = r.partition_date
left join quarantined q on q.partition_date = r.partition_date
left join duplicates d on d.partition_date = r.partition_date
