{# Engine-specific SQL lives here, behind adapter.dispatch, so the models stay standard
   SQL. A shop that outgrows one machine adds e.g. spark__ or trino__ versions of these
   macros and runs the same models on that target. #}

{# Parse a text timestamp to a UTC timestamp. ISO-8601 with an offset or "Z" is taken
   as is; a time followed by an IANA zone name ("2026-09-02 10:00:00 Europe/Paris") is
   read in that zone; a timestamp without a zone is read in the source's time zone `tz`.
   Other layouts come from `formats` (strptime formats, the source's timestamp_format
   setting), tried in order when the text is not ISO: read in `tz`, or with their own
   offset when the format has %z. NULL when unparseable, including an unknown zone name
   or an offset beyond +-14:00. #}
{% macro parse_utc_timestamp(column, tz, formats=[]) -%}
  {{ return(adapter.dispatch('parse_utc_timestamp', 'recs_pipeline')(column, tz, formats)) }}
{%- endmacro %}

{% macro default__parse_utc_timestamp(column, tz, formats=[]) -%}
  {{ try_cast(column, dbt.type_timestamp()) }}
{%- endmacro %}

{% macro duckdb__parse_utc_timestamp(column, tz, formats=[]) -%}
  {#- A cast to TIMESTAMP ignores whatever follows the time (a zone name, any offset), so
      only text without a zone takes that branch. -#}
  {%- set local_formats = [] -%}
  {%- set zoned_formats = [] -%}
  {%- for f in formats -%}
    {%- do (zoned_formats if '%z' in f else local_formats).append(f) -%}
  {%- endfor -%}
  case
    when regexp_matches(trim({{ column }}), '\d:\d{2}(:\d{2}(\.\d+)?)?[Zz]$')
      then timezone('UTC', try_cast(upper(trim({{ column }})) as timestamptz))
    when regexp_matches(trim({{ column }}), '\d:\d{2}(:\d{2}(\.\d+)?)?\s*[+-]\d{2}(:?\d{2})?$')
      then case when regexp_matches(trim({{ column }}), '[+-](0\d|1[0-3])(:?[0-5]\d)?$|[+-]14(:?00)?$')
                then timezone('UTC', try_cast(trim({{ column }}) as timestamptz)) end
    when regexp_matches(trim({{ column }}), '\d\s+[A-Za-z][A-Za-z0-9_+/-]*$')
      then timezone('UTC', try_cast(trim({{ column }}) as timestamptz))
    {%- if zoned_formats %}
    when try_strptime(trim({{ column }}), {{ format_list(zoned_formats) }}) is not null
      then timezone('UTC', try_strptime(trim({{ column }}), {{ format_list(zoned_formats) }}))
    {%- endif %}
    else timezone('UTC', timezone('{{ tz }}',
      {%- if local_formats %}
      coalesce(try_cast(trim({{ column }}) as timestamp),
               try_strptime(trim({{ column }}), {{ format_list(local_formats) }})::timestamp)
      {%- else %}
      try_cast(trim({{ column }}) as timestamp)
      {%- endif %}))
  end
{%- endmacro %}

{# A SQL list of string literals. #}
{% macro format_list(values) -%}
  [{% for v in values %}'{{ v | replace("'", "''") }}'{% if not loop.last %}, {% endif %}{% endfor %}]
{%- endmacro %}

{# A cast that gives NULL instead of failing (dbt.safe_cast is a plain cast on DuckDB):
   staging must never crash on a value that validation would quarantine. #}
{% macro try_cast(expression, data_type) -%}
  {{ return(adapter.dispatch('try_cast', 'recs_pipeline')(expression, data_type)) }}
{%- endmacro %}

{% macro default__try_cast(expression, data_type) -%}
  try_cast({{ expression }} as {{ data_type }})
{%- endmacro %}

{# True when a text value holds a control character (U+0000-U+001F, U+007F). #}
{% macro has_control_chars(column) -%}
  {{ return(adapter.dispatch('has_control_chars', 'recs_pipeline')(column)) }}
{%- endmacro %}

{% macro default__has_control_chars(column) -%}
  coalesce(regexp_like({{ column }}, '[[:cntrl:]]'), false)
{%- endmacro %}

{% macro duckdb__has_control_chars(column) -%}
  coalesce(regexp_matches({{ column }}, '[\x00-\x1F\x7F]'), false)
{%- endmacro %}

{# True when a text value is a plain decimal number. #}
{% macro is_number(column) -%}
  {{ return(adapter.dispatch('is_number', 'recs_pipeline')(column)) }}
{%- endmacro %}

{% macro default__is_number(column) -%}
  ({{ dbt.safe_cast(column, type_double()) }} is not null)
{%- endmacro %}

{% macro duckdb__is_number(column) -%}
  (regexp_full_match(trim({{ column }}), '[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?')
   and isfinite(try_cast(trim({{ column }}) as double)))
{%- endmacro %}

{# One row per (key, lower-case word of 3+ letters) of a text column. #}
{% macro text_words(relation_sql, key, text_column) -%}
  {{ return(adapter.dispatch('text_words', 'recs_pipeline')(relation_sql, key, text_column)) }}
{%- endmacro %}

{% macro duckdb__text_words(relation_sql, key, text_column) -%}
  select distinct {{ key }}, word
  from (
    select {{ key }}, unnest(regexp_extract_all(lower({{ text_column }}), '[a-z]{3,}')) as word
    from {{ relation_sql }}
  ) w
{%- endmacro %}

{# The CASE expression giving an event's interaction weight from var('event_weights'). #}
{% macro event_weight(event_type, rating) -%}
  case {{ event_type }}
  {%- for name, weight in var('event_weights').items() %}
    when '{{ name }}' then {{ weight }}{% if name == 'rating' %} * coalesce({{ rating }}, 0){% endif %}
  {%- endfor %}
    else 0
  end
{%- endmacro %}

{# A JSON array of {item_id, title, price} objects in `order_by` order (one per group). #}
{% macro items_json(item_id, title, price, order_by) -%}
  {{ return(adapter.dispatch('items_json', 'recs_pipeline')(item_id, title, price, order_by)) }}
{%- endmacro %}

{% macro duckdb__items_json(item_id, title, price, order_by) -%}
  to_json(list({'item_id': {{ item_id }}, 'title': {{ title }}, 'price': {{ price }}} order by {{ order_by }}))
{%- endmacro %}

{# An 8-byte float (dbt's type_float() is a 4-byte FLOAT on DuckDB: prices would lose cents). #}
{% macro type_double() -%}
  {{ return(adapter.dispatch('type_double', 'recs_pipeline')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}

{% macro duckdb__type_double() -%}double{%- endmacro %}
