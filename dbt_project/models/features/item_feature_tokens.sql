{#- Long format item features for the hybrid model: one row per (item, feature token).
    Tokens: category, brand, price band, and description words that are neither rare
    (< min_word_items items) nor near-universal (> max_word_share of items). -#}

with items as (
    select * from {{ ref('item_features') }}
),
words as (
    {{ text_words('(select item_id, coalesce(title, \'\') || \' \' || coalesce(description, \'\') as text from ' ~ ref('item_features') ~ ')', 'item_id', 'text') }}
),
word_counts as (
    select word, count(*) as n_items from words group by word
),
useful_words as (
    select word from word_counts
    where n_items >= {{ var('min_word_items') }}
      and n_items <= {{ var('max_word_share') }} * (select count(*) from items)
)

select item_id, 'category:' || category as feature, 1.0 as weight from items where category is not null
union all
select item_id, 'brand:' || brand, 1.0 from items where brand is not null
union all
select item_id, 'price_band:' || cast(price_band as {{ dbt.type_string() }}), 1.0 from items where price_band is not null
union all
select w.item_id, 'word:' || w.word, 0.5 from words w join useful_words u on u.word = w.word
