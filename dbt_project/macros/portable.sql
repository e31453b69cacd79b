{# Engine-specific SQL lives here, behind adapter.dispatch, so the models stay standard
   SQL: duckdb__ versions for the local target, spark__ versions for the Spark target
   (dbt-spark; its storage convention and dbt-spark overrides are in spark_warehouse.sql).
   Another engine (e.g. trino__) adds its versions the same way. The spark__ versions
   return what the duckdb__ ones do, including DuckDB's quirks. #}

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

{% macro spark__parse_utc_timestamp(column, tz, formats=[]) -%}
  {#- The same branches as duckdb__, in the same order; Spark's own casts accept other
      layouts than DuckDB's, so the text is taken apart by spark__wall_clock and the zone
      applied explicitly. -#}
  {%- set text = 'trim(' ~ column ~ ')' -%}
  {%- set local_formats = [] -%}
  {%- set zoned_formats = [] -%}
  {%- for f in formats -%}
    {%- do (zoned_formats if '%z' in f else local_formats).append(f) -%}
  {%- endfor -%}
  {#- Java zone ids are case-sensitive, DuckDB's are not: try the name as given, in upper
      case (utc, est) and capitalised per word (europe/paris). 'Z' is no zone name to DuckDB. -#}
  {%- set known_zone -%}
    {{ spark__let("regexp_extract(" ~ text ~ ", r'\s([A-Za-z][A-Za-z0-9_+/-]*)$', 1)", 'zone_name') }}
      case when upper(zone_name) = 'Z' then null
      {%- for z in ['zone_name', 'upper(zone_name)',
                    "array_join(transform(split(zone_name, '/'), p -> array_join(transform(split(p, '_'), w -> concat(upper(left(w, 1)), lower(substr(w, 2)))), '_')), '/')"] %}
      when try_cast(concat('2000-01-01 00:00:00 ', {{ z }}) as timestamp) is not null then {{ z }}
      {%- endfor %}
      end), 1)
  {%- endset -%}
  case
    when {{ text }} rlike r'\d:\d{2}(:\d{2}(\.\d+)?)?[Zz]$'
      then {{ spark__wall_clock('substr(' ~ text ~ ', 1, length(' ~ text ~ ') - 1)', require_time=true) }}
    when {{ text }} rlike r'\d:\d{2}(:\d{2}(\.\d+)?)?\s*[+-]\d{2}(:?\d{2})?$'
      {#- DuckDB refuses a space before the offset. -#}
      then case when {{ text }} rlike r'\d([+-](0\d|1[0-3])(:?[0-5]\d)?|[+-]14(:?00)?)$'
        then timestampadd(SECOND,
          {#- offset: sign, hours, minutes ('' when absent) -#}
          {{ spark__let("split(regexp_replace(regexp_extract(" ~ text ~ ", r'[+-]\d{2}(:?\d{2})?$', 0), r'^([+-])(\d{2}):?(\d{2})?$', '$1,$2,$3'), ',')", 'utc_offset') }}
            case when utc_offset[0] = '+' then -1 else 1 end
            * (cast(utc_offset[1] as int) * 3600 + coalesce(try_cast(nullif(utc_offset[2], '') as int), 0) * 60)), 1),
          {{ spark__wall_clock("regexp_replace(" ~ text ~ ", r'[+-]\d{2}(:?\d{2})?$', '')", require_time=true) }}) end
    when {{ text }} rlike r'\d\s+[A-Za-z][A-Za-z0-9_+/-]*$'
      then {{ spark__local_to_utc(spark__wall_clock("regexp_replace(" ~ text ~ ", r'\s+[A-Za-z][A-Za-z0-9_+/-]*$', '')", require_time=true), known_zone) }}
    {%- if zoned_formats %}
    when {{ spark__strptime(text, zoned_formats) }} is not null
      then {{ spark__strptime(text, zoned_formats) }}
    {%- endif %}
    else {{ spark__local_to_utc(
      'coalesce(' ~ spark__wall_clock(text, ignore_zone=true) ~ ((', ' ~ spark__strptime(text, local_formats)) if local_formats else '') ~ ')',
      "'" ~ tz ~ "'") }}
  end
{%- endmacro %}

{# Bind `expression` to the lambda variable `name` for the body that follows (closed by
   ")"), so that it is written and computed once: element_at(transform(array(x), ...)). #}
{% macro spark__let(expression, name) -%}
  element_at(transform(array({{ expression }}), {{ name }} ->
{%- endmacro %}

{# Text "Y-M-D[ h:m[:s[.f]]]" as DuckDB's cast to TIMESTAMP reads it (1-2 digit fields, date
   separators - / \ or space, T or spaces before the time, 24:00:00, fraction cut to
   microseconds), as that wall clock in UTC; NULL for anything else. Spark's cast differs
   both ways ('2026' parses, '2026/09/01' does not). `ignore_zone`: accept and ignore a
   zone after the time ('Z', '+02:00', ' Europe/Paris') as DuckDB's cast does; `as_date`:
   the date (DuckDB's cast to DATE also takes a valid time and zone after it). #}
{% macro spark__wall_clock(text, require_time=false, ignore_zone=false, as_date=false) -%}
  {%- set pattern -%}
    ^\s*(-?\d+)([-/\\ ])(\d{1,2})\2(\d{1,2})(?:(?:T\s*|\s+)(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?{{ '(?:\s?Z|\s?[+-]\d{2}(?::?\d{2})*| [A-Za-z][A-Za-z0-9_+/:-]*)?' if ignore_zone or as_date }}){{ '' if require_time else '?' }}\s*$
  {%- endset -%}
  {#- parts: year, month, day, hour, minute, second, fraction ('' when absent) -#}
  {%- set n = "try_cast(nullif(parts[%d], '') as int)" -%}
  {%- set midnight = n | format(3) ~ " = 24 and " ~ n | format(4) ~ " = 0 and coalesce(" ~ n | format(5) ~ ", 0) = 0 and parts[6] rlike r'^0*$'" -%}
  {%- set day_start = "try_make_timestamp(" ~ n | format(0) ~ ", " ~ n | format(1) ~ ", " ~ n | format(2) ~ ", 0, 0, 0, 'UTC')" -%}
  case when {{ text }} rlike r'{{ pattern }}' then
    {{ spark__let("split(regexp_replace(" ~ text ~ ", r'" ~ pattern ~ "', '$1,$3,$4,$5,$6,$7,$8'), ',')", 'parts') }}
      case
      {%- if as_date %}
        when parts[3] = '' or {{ midnight }}
             or ({{ n | format(3) }} < 24 and {{ n | format(4) }} < 60 and coalesce({{ n | format(5) }}, 0) < 60)
          then cast({{ day_start }} as date)
      {%- else %}
        when {{ midnight }}
          then timestampadd(DAY, 1, {{ day_start }})
        when coalesce({{ n | format(5) }}, 0) < 60
          then try_make_timestamp({{ n | format(0) }}, {{ n | format(1) }}, {{ n | format(2) }},
                 coalesce({{ n | format(3) }}, 0), coalesce({{ n | format(4) }}, 0),
                 cast(concat(coalesce({{ n | format(5) }}, 0), '.', rpad(substr(parts[6], 1, 6), 6, '0')) as decimal(8, 6)), 'UTC')
      {%- endif %}
      end), 1)
  end
{%- endmacro %}

{# A wall-clock time (a timestamp read as UTC) in zone `zone` as a UTC timestamp. In the
   hour that repeats when clocks go back, Java takes the earlier reading and DuckDB (ICU)
   the later one: use the later one when it reads back as the same wall-clock time. #}
{% macro spark__local_to_utc(wall_clock, zone) -%}
  {%- if zone | trim in ("'UTC'", "'Etc/UTC'") -%}
    {{ wall_clock }}
  {%- else -%}
    {%- set later = 'timestampadd(HOUR, -1, to_utc_timestamp(timestampadd(HOUR, 1, in_zone.wall_clock), in_zone.zone_id))' -%}
    {{ spark__let("named_struct('wall_clock', " ~ wall_clock ~ ", 'zone_id', " ~ zone ~ ")", 'in_zone') }}
      case when from_utc_timestamp({{ later }}, in_zone.zone_id) = in_zone.wall_clock then {{ later }}
           else to_utc_timestamp(in_zone.wall_clock, in_zone.zone_id) end), 1)
  {%- endif -%}
{%- endmacro %}

{# strptime `formats` tried in order, like DuckDB's try_strptime(text, [formats]): a local
   layout gives the wall clock as UTC, one with %z the instant. DuckDB lets a space match
   any run of spaces and ignores trailing ones, and reads %y 69-99 as 19xx. #}
{% macro spark__strptime(text, formats) -%}
  coalesce(
  {%- for f in formats %}
    {%- set parsed = "try_to_timestamp(regexp_replace(" ~ text ~ ", r'\s+', ' '), '" ~ (spark__datetime_pattern(f) | replace('\\', '\\\\') | replace("'", "\\'")) ~ "')" -%}
    {%- if '%y' in f %}
    case when year({{ parsed }}) >= 2069 then add_months({{ parsed }}, -1200) else {{ parsed }} end
    {%- else %}
    {{ parsed }}
    {%- endif %}{% if not loop.last %},{% endif %}
  {%- endfor %})
{%- endmacro %}

{# A strptime format as a Spark datetime pattern. Numeric fields parse 1-2 digits like
   strptime's, except next to another field ('%Y%m%d'), where they need their full width. #}
{% macro spark__datetime_pattern(strptime_format) -%}
  {%- set directives = {
      'Y': ['y', 'yyyy'], 'y': ['yy', 'yy'], 'm': ['M', 'MM'], 'd': ['d', 'dd'], 'H': ['H', 'HH'],
      'I': ['h', 'hh'], 'M': ['m', 'mm'], 'S': ['s', 'ss'], 'f': ['SSSSSS', 'SSSSSS'], 'j': ['D', 'DDD'],
      'p': ['a', 'a'], 'b': ['MMM', 'MMM'], 'h': ['MMM', 'MMM'], 'B': ['MMMM', 'MMMM'],
      'z': ['[xxx][xx][x]', '[xxx][xx][x]']} -%}
  {%- set tokens = [] -%}
  {%- set ns = namespace(percent=false) -%}
  {%- for ch in strptime_format -%}
    {%- if ns.percent -%}
      {%- if ch == '%' -%}
        {%- do tokens.append({'literal': '%'}) -%}
      {%- elif ch in directives -%}
        {%- do tokens.append({'directive': ch}) -%}
      {%- else -%}
        {{ exceptions.raise_compiler_error("timestamp_formats: %" ~ ch ~ " (in '" ~ strptime_format ~ "') has no Spark equivalent here") }}
      {%- endif -%}
      {%- set ns.percent = false -%}
    {%- elif ch == '%' -%}
      {%- set ns.percent = true -%}
    {%- else -%}
      {%- do tokens.append({'literal': ch}) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set out = [] -%}
  {%- for token in tokens -%}
    {%- if 'directive' in token -%}
      {%- set adjacent = (loop.index0 > 0 and 'directive' in tokens[loop.index0 - 1])
                         or (not loop.last and 'directive' in tokens[loop.index0 + 1]) -%}
      {%- do out.append(directives[token['directive']][1 if adjacent else 0]) -%}
    {%- elif token['literal'] in ' -/:.,' -%}
      {%- do out.append(token['literal']) -%}
    {%- elif token['literal'] == "'" -%}
      {%- do out.append("''") -%}
    {%- else -%}
      {%- do out.append("'" ~ token['literal'] ~ "'") -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(out | join('')) }}
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

{% macro spark__try_cast(expression, data_type) -%}
  {%- if data_type | lower == 'date' -%}
    {#- Spark's cast reads '2026' and '2026-09' as dates and not '2026/09/01'; DuckDB the opposite. -#}
    {{ spark__wall_clock(expression, as_date=true) }}
  {%- else -%}
    try_cast({{ expression }} as {{ data_type }})
  {%- endif -%}
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

{% macro spark__has_control_chars(column) -%}
  coalesce({{ column }} rlike r'[\x00-\x1F\x7F]', false)
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

{% macro spark__is_number(column) -%}
  (trim({{ column }}) rlike r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$'
   and abs(try_cast(trim({{ column }}) as double)) < double('Infinity'))
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

{% macro spark__text_words(relation_sql, key, text_column) -%}
  select distinct {{ key }}, word
  from (
    select {{ key }}, explode(regexp_extract_all(lower({{ text_column }}), '[a-z]{3,}', 0)) as word
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

{% macro spark__items_json(item_id, title, price, order_by) -%}
  {#- Sorted by a leading sort key, which is then dropped; to_json keeps null fields only when told. -#}
  to_json(
    transform(
      array_sort(collect_list(named_struct('sort_key', {{ order_by }}, 'item_id', {{ item_id }}, 'title', {{ title }}, 'price', {{ price }}))),
      x -> named_struct('item_id', x.item_id, 'title', x.title, 'price', x.price)),
    map('ignoreNullFields', 'false'))
{%- endmacro %}

{# An 8-byte float (dbt's type_float() is a 4-byte FLOAT on DuckDB: prices would lose cents). #}
{% macro type_double() -%}
  {{ return(adapter.dispatch('type_double', 'recs_pipeline')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}

{% macro duckdb__type_double() -%}double{%- endmacro %}

{% macro spark__type_double() -%}double{%- endmacro %}

{# The campaign message events (recs_pipeline.sources.base.CANONICAL_EVENT_TYPES): they
   go to stg_message_events, not to the shopper behaviour of stg_events. #}
{% macro message_event_types() -%}
'message_sent', 'message_open', 'message_click', 'unsubscribe'
{%- endmacro %}
