{#- Per day: raw rows = clean (behaviour and message events) + quarantined + duplicates. A row with is_balanced = false
    means a row was lost or counted twice. A day whose file the load refused is here
    too, its lines counted as rejected_lines (quality.rejected_files), not lost; its
    raw rows are those of the version loaded before, if any. -#}

with raw_counts as (
    select partition_date, count(*) as raw_rows from {{ source('raw', 'events') }} group by partition_date
),
clean as (
    select partition_date, count(*) as clean_rows
    from (
        select partition_date from {{ ref('stg_events') }}
        union all
        select partition_date from {{ ref('stg_message_events') }}
    ) c
    group by partition_date
),
quarantined as (
    select partition_date, count(*) as quarantined_rows from {{ ref('quarantine_events') }} group by partition_date
),
duplicates as (
    select partition_date, count(*) as duplicate_rows from {{ ref('duplicate_events') }} group by partition_date
),
rejected as (
    select partition_date, sum(rejected_lines) as rejected_lines, count(*) as rejected_files
    from {{ source('loader', 'rejected_files') }}
    where resolved_at is null
    group by partition_date
),
days as (
    select partition_date from raw_counts
    union
    select partition_date from rejected
)

select
    d.partition_date,
    coalesce(r.raw_rows, 0) as raw_rows,
    coalesce(c.clean_rows, 0) as clean_rows,
    coalesce(q.quarantined_rows, 0) as quarantined_rows,
    coalesce(u.duplicate_rows, 0) as duplicate_rows,
    coalesce(x.rejected_files, 0) as rejected_files,
    coalesce(x.rejected_lines, 0) as rejected_lines,
    coalesce(r.raw_rows, 0) = coalesce(c.clean_rows, 0) + coalesce(q.quarantined_rows, 0) + coalesce(u.duplicate_rows, 0) as is_balanced
from days d
left join raw_counts r on r.partition_date = d.partition_date
left join clean c on c.partition_date = d.partition_date
left join quarantined q on q.partition_date = d.partition_date
left join duplicates u on u.partition_date = d.partition_date
left join rejected x on x.partition_date = d.partition_date
