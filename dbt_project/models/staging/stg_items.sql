{#- The catalogue, typed; one row per item (the last line wins when a snapshot repeats an id). -#}

with ranked as (
    select
        trim(item_id) as item_id,
        nullif(trim(title), '') as title,
        lower(nullif(trim(category), '')) as category,
        lower(nullif(trim(brand), '')) as brand,
        case when {{ is_number('price') }} and {{ try_cast('trim(price)', type_double()) }} >= 0
             then {{ try_cast('trim(price)', type_double()) }} end as price,
        nullif(trim(description), '') as description,
        lower(trim(coalesce(in_stock, 'true'))) not in ('false', '0', 'no', 'n') as in_stock,
        {{ try_cast('trim(launch_date)', 'date') }} as launch_date,
        row_number() over (partition by trim(item_id) order by source_line desc) as copy_rank
    from {{ source('raw', 'items') }}
    where item_id is not null and trim(item_id) <> ''
)

select item_id, title, category, brand, price, description, in_stock, launch_date
from ranked
where copy_rank = 1
