{#- User attributes, typed; one row per user (the last line wins). -#}

with ranked as (
    select
        trim(user_id) as user_id,
        {{ try_cast('trim(signup_date)', 'date') }} as signup_date,
        nullif(trim(age_band), '') as age_band,
        upper(nullif(trim(gender), '')) as gender,
        nullif(trim(country), '') as country,
        lower(nullif(trim(segment), '')) as segment,
        lower(trim(coalesce(marketing_consent, 'false'))) in ('true', '1', 'yes', 'y') as marketing_consent,
        row_number() over (partition by trim(user_id) order by source_line desc) as copy_rank
    from {{ source('raw', 'users') }}
    where user_id is not null and trim(user_id) <> ''
)

select user_id, signup_date, age_band, gender, country, segment, marketing_consent
from ranked
where copy_rank = 1
