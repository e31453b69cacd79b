{#- Long format user features for the hybrid model: one row per (user, feature token). -#}

with users as (
    select * from {{ ref('user_features') }}
)

select user_id, 'country:' || country as feature, 1.0 as weight from users where country is not null
union all
select user_id, 'age_band:' || age_band, 1.0 from users where age_band is not null
union all
select user_id, 'gender:' || gender, 1.0 from users where gender is not null
union all
select user_id, 'segment:' || segment, 1.0 from users where segment is not null
