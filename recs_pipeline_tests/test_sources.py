"""Source adapters and the raw loader on small hand-built files (and a few real days)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from recs_pipeline.settings import SourceSettings
from recs_pipeline.sources.adapters import CsvSource, MovieLensSource, OnlineRetailSource
from recs_pipeline.sources.base import SourceError
from recs_pipeline.sources.loader import load_event_days, load_items

from .conftest import MOVIELENS, ONLINE_RETAIL

HEADER = "user_id,item_id,event_type,event_ts,quantity,price,session_id,search_query\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def raw_rows(con):
    return con.execute(
        "SELECT source_line, user_id, item_id, search_query, parse_error, raw_line FROM raw.events ORDER BY source_line"
    ).fetchall()


def test_every_line_is_kept_with_its_line_number(tmp_path):
    write(
        tmp_path / "events" / "2026-09-01.csv",
        HEADER
        + "U1,I1,view,2026-09-01T10:00:00Z,1,9.99,S1,\n"
        + "U1,I1\n"  # too few fields
        + 'U2,I2,search,2026-09-01T11:00:00Z,1,,S2,"red, dress"\n'  # quoted comma
        + "U3,I3,view,2026-09-01T11:00:00Z,1,5.00,S2,,extra\n"  # too many fields
        + "U4,I4,purchase,2026-09-01T12:00:00Z,2,3.50,S3,\n",
    )
    source = CsvSource(tmp_path, SourceSettings())
    con = duckdb.connect()
    [load] = load_event_days(con, source, [date(2026, 9, 1)])
    assert (load.rows, load.malformed_lines) == (5, 2)
    rows = raw_rows(con)
    assert [r[0] for r in rows] == [2, 3, 4, 5, 6]
    assert rows[0][1:3] == ("U1", "I1") and rows[0][4] is None
    assert rows[1][4].startswith("malformed_line") and rows[1][5] == "U1,I1"
    assert rows[2][3] == "red, dress"
    assert rows[3][4].startswith("malformed_line") and rows[3][5].endswith(",extra")
    assert rows[4][1] == "U4"


def test_reloading_a_day_replaces_it(tmp_path):
    path = write(tmp_path / "events" / "2026-09-01.csv", HEADER + "U1,I1,view,2026-09-01T10:00:00Z,1,1.0,S1,\n")
    source = CsvSource(tmp_path, SourceSettings())
    con = duckdb.connect()
    load_event_days(con, source, [date(2026, 9, 1)])
    load_event_days(con, source, [date(2026, 9, 1)])
    assert con.execute("SELECT count(*) FROM raw.events").fetchall()[0][0] == 1
    write(path, HEADER + "U1,I1,view,2026-09-01T10:00:00Z,1,1.0,S1,\nU2,I2,view,2026-09-01T10:00:00Z,1,1.0,S1,\n")
    load_event_days(con, source, [date(2026, 9, 1)])
    assert con.execute("SELECT count(*) FROM raw.events").fetchall()[0][0] == 2


def test_reordered_columns_are_read_by_name(tmp_path):
    write(
        tmp_path / "events" / "2026-09-02.csv",
        "event_type,item_id,user_id,event_ts\nview,I9,U9,2026-09-02T08:00:00Z\n",
    )
    con = duckdb.connect()
    load_event_days(con, CsvSource(tmp_path, SourceSettings()), [date(2026, 9, 2)])
    assert con.execute("SELECT user_id, item_id, event_type, price FROM raw.events").fetchall() == [
        ("U9", "I9", "view", None)
    ]


def test_missing_required_column_names_file_and_column(tmp_path):
    path = write(tmp_path / "events" / "2026-09-03.csv", "user_id,event_type,event_ts\nU1,view,2026-09-03T00:00:00Z\n")
    with pytest.raises(SourceError, match=r"2026-09-03\.csv.*item_id"):
        load_event_days(duckdb.connect(), CsvSource(tmp_path, SourceSettings()), [date(2026, 9, 3)])
    assert path.exists()


def test_generic_source_maps_columns_and_event_names(tmp_path):
    write(
        tmp_path / "clicks" / "log_2026-09-04.csv",
        "customer;sku;action;when\nC1;P1;pageview;2026-09-04 10:00:00\nC2;P2;buy;2026-09-04 11:00:00\n",
    )
    cfg = SourceSettings(
        kind="generic",
        events_glob="clicks/log_*.csv",
        delimiter=";",
        event_columns={"user_id": "customer", "item_id": "sku", "event_type": "action", "event_ts": "when"},
        event_type_values={"pageview": "view", "buy": "purchase"},
    )
    source = CsvSource(tmp_path, cfg)
    assert source.event_days() == [date(2026, 9, 4)]
    con = duckdb.connect()
    load_event_days(con, source, [date(2026, 9, 4)])
    assert con.execute("SELECT user_id, item_id, event_type FROM raw.events ORDER BY source_line").fetchall() == [
        ("C1", "P1", "view"),
        ("C2", "P2", "purchase"),
    ]


def test_two_files_for_one_day_is_an_error(tmp_path):
    write(tmp_path / "events" / "2026-09-05.csv", HEADER)
    write(tmp_path / "events" / "copy-of-2026-09-05.csv", HEADER)
    with pytest.raises(SourceError, match="two files for 2026-09-05"):
        CsvSource(tmp_path, SourceSettings()).event_files()


@pytest.mark.realdata
def test_online_retail_lines_become_purchases_returns_and_guests():
    source = OnlineRetailSource(ONLINE_RETAIL)
    days = source.event_days()
    assert len(days) == 219 and days[0] == date(2010, 12, 1)
    con = duckdb.connect()
    [load] = load_event_days(con, source, [days[0]])
    n_lines = sum(1 for _ in (ONLINE_RETAIL / f"{days[0]}.csv").open()) - 1
    assert load.rows == n_lines  # every invoice line is a raw row, guests included
    by_type = dict(con.execute("SELECT event_type, count(*) FROM raw.events GROUP BY 1").fetchall())
    assert by_type["purchase"] > 2000 and by_type["return"] > 0 and by_type["adjustment"] > 0
    assert con.execute("SELECT count(*) FROM raw.events WHERE user_id LIKE '%.0'").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM raw.events WHERE user_id IS NULL").fetchall()[0][0] > 0
    assert con.execute("SELECT min(quantity::INT) FROM raw.events WHERE event_type = 'return'").fetchall()[0][0] > 0
    n_items = load_items(con, source)
    assert n_items > 3000


@pytest.mark.realdata
def test_movielens_ratings_by_day():
    source = MovieLensSource(MOVIELENS)
    days = source.event_days()
    con = duckdb.connect()
    load_event_days(con, source, days[:3])
    rows = con.execute("SELECT event_type, count(*), min(rating::INT), max(rating::INT) FROM raw.events GROUP BY 1").fetchall()
    assert rows[0][0] == "rating" and 1 <= rows[0][2] <= rows[0][3] <= 5
    assert load_items(con, source) == 1682


# --- Loading a range of days at once ------------------------------------------------------


def _range_shop(tmp_path: Path) -> tuple[CsvSource, list[date]]:
    """Four generated days (with the generator's own dirt), one of them with injected bad
    lines of every kind the fast reader must number around or hand to the line splitter."""
    from recs_pipeline.synthetic.shop import ShopConfig, generate_landing_zone

    landing = tmp_path / "landing"
    generate_landing_zone(landing, ShopConfig(seed=3, n_days=4, n_users=60, n_items=40, events_per_day=120))
    days = [date(2026, 9, 1) + timedelta(days=i) for i in range(4)]
    bad = landing / "events" / f"{days[1]}.csv"
    lines = bad.read_bytes().split(b"\n")
    user = lines[5].split(b",")[0]
    lines[3:3] = [
        b"",  # blank line
        user + b",I1\n"[:-1],  # too few fields, the user id must be redacted
        b"x," + user + b",view,2026-09-02T10:00:00Z,1,1.0,S1,,extra",  # too many, id in another field
        b"",
    ]
    lines[12:12] = [b"\xff\xfe,bad,encoding,,,,,", b'U1,I1,view,2026-09-02T10:00:00Z,1,1.0,S1,"a ""quote""",x']
    bad.write_bytes(b"\n".join(lines))
    # A quoted newline and an open quote (the file goes line by line), a CRLF file (read alone).
    quoted = landing / "events" / f"{days[2]}.csv"
    text = quoted.read_bytes().split(b"\n")
    text[4:4] = [b'U2,I2,search,2026-09-03T10:00:00Z,1,,S2,"two', b'lines"', b'U1,I1,view,x,1,1.0,S1,"open']
    quoted.write_bytes(b"\n".join(text))
    crlf = landing / "events" / f"{days[3]}.csv"
    crlf.write_bytes(b"\xef\xbb\xbf" + crlf.read_bytes().replace(b"\n", b"\r\n"))
    return CsvSource(landing, SourceSettings()), days


def _all_rows(con) -> list[tuple]:
    return con.execute(
        "SELECT * EXCLUDE (loaded_at) FROM raw.events ORDER BY partition_date, source_file, source_line"
    ).fetchall()


def test_a_range_loads_like_its_days_one_by_one(tmp_path):
    from recs_pipeline.privacy.pseudonym import Pseudonymizer
    from recs_pipeline.privacy.suppression import ensure_privacy_schema
    from recs_pipeline.sources.loader import load_one_day

    source, days = _range_shop(tmp_path)
    pseudonymizer = Pseudonymizer("test-key")
    # An erased user (not the one of the injected lines): their rows stay out of every load.
    injected = (tmp_path / "landing" / "events" / f"{days[1]}.csv").read_bytes().split(b"\n")[4].split(b",")[0].decode()
    first_day = (tmp_path / "landing" / "events" / f"{days[0]}.csv").read_text().splitlines()[1:]
    erased = pseudonymizer.one(next(u for u in (line.split(",")[0] for line in first_day) if u and u != injected))

    def warehouse():
        con = duckdb.connect()
        ensure_privacy_schema(con)
        con.execute("INSERT INTO privacy.suppressed_users VALUES (sha256(?), 'r1', now()::TIMESTAMP)", [erased])
        return con

    at_once, day_by_day, legacy = warehouse(), warehouse(), warehouse()
    loads = load_event_days(at_once, source, days, pseudonymizer)
    load_event_days(at_once, source, days, pseudonymizer)  # re-loading replaces, never duplicates
    singles = [load for day in days for load in load_event_days(day_by_day, source, [day], pseudonymizer)]
    olds = [load_one_day(legacy, source, day, pseudonymizer) for day in days]

    rows = _all_rows(at_once)
    assert rows == _all_rows(day_by_day) == _all_rows(legacy)
    assert [(l.rows, l.malformed_lines, l.source_file, l.distinct_users, l.suppressed_rows) for l in loads] == [
        (l.rows, l.malformed_lines, l.source_file, l.distinct_users, l.suppressed_rows) for l in olds
    ] == [(l.rows, l.malformed_lines, l.source_file, l.distinct_users, l.suppressed_rows) for l in singles]
    assert loads[0].suppressed_rows > 0 and not any(r[1] == erased for r in rows)
    errors = {r[-2] for r in rows if r[0] == days[1] and r[-2] and r[-2].startswith("malformed_line")}
    assert {"malformed_line: MISSING COLUMNS", "malformed_line: TOO MANY COLUMNS",
            "malformed_line: INVALID ENCODING"} <= errors  # fmt: skip
    assert "malformed_line: UNQUOTED VALUE" in {r[-2] for r in rows if r[0] == days[2]}
    # The user field of a malformed line is pseudonymised, wherever the line was read.
    redacted = {r[-1] for r in rows if r[0] == days[1] and r[-2] and r[-2].startswith("malformed_line")}
    assert not any(line.startswith(injected + ",") for line in redacted)
    assert any(line.startswith(pseudonymizer.one(injected) + ",I1") for line in redacted)


def test_a_bad_day_in_a_range_is_rejected_alone_and_every_other_day_loads(tmp_path):
    from recs_pipeline.sources.loader import load_event_files, record_rejected_files

    source, days = _range_shop(tmp_path)
    path = tmp_path / "landing" / "events" / f"{days[2]}.csv"
    path.write_text(path.read_text().replace("price", "unit_price", 1))
    n_lines = len(path.read_text().splitlines()) - 1
    con = duckdb.connect()
    report = load_event_files(con, source, days)
    loaded = [r[0] for r in con.execute("SELECT DISTINCT partition_date FROM raw.events ORDER BY 1").fetchall()]
    assert loaded == [d for d in days if d != days[2]]
    [rejected] = report.rejected
    assert (rejected.day, rejected.source_file, rejected.first_offending_line, rejected.rejected_lines) == (
        days[2], f"events/{days[2]}.csv", 1, n_lines)
    assert "price" in rejected.reason and "schema drift" in rejected.reason
    record_rejected_files(con, report)
    assert con.execute("SELECT partition_date, rejected_lines, resolved_at FROM quality.rejected_files").fetchall() == [
        (days[2], n_lines, None)]
    # The strict form loads the same good days, then raises the bad day's error.
    with pytest.raises(SourceError, match=rf"{days[2]}\.csv: line 1 .*price"):
        load_event_days(duckdb.connect(), source, days)
    # A corrected re-delivery loads and closes the open row (kept as history).
    path.write_text(path.read_text().replace("unit_price", "price", 1))
    report = load_event_files(con, source, [days[2]])
    record_rejected_files(con, report)
    assert report.rejected == [] and con.execute(
        "SELECT count(*) FROM quality.rejected_files WHERE resolved_at IS NOT NULL").fetchall() == [(1,)]


def test_only_files_the_scan_cannot_number_are_read_alone(tmp_path):
    from recs_pipeline.sources.base import parse_delimited_files

    source, days = _range_shop(tmp_path)
    paths = [source.event_files()[day] for day in days]
    con = duckdb.connect()
    parsed = parse_delimited_files(con, paths, name="t", required=("user_id",))
    alone = [r[0] for r in con.execute("SELECT DISTINCT _file FROM _files_t_alone ORDER BY 1").fetchall()]
    assert alone == [2, 3]  # the quoted newline / open quote, the CRLF file
    lines = con.execute(f"SELECT source_line FROM {parsed.table} WHERE _file = 1 ORDER BY 1").fetchall()
    rejected = con.execute(f"SELECT line FROM {parsed.rejects} WHERE _file = 1 ORDER BY 1").fetchall()
    n_lines = len(paths[1].read_bytes().rstrip(b"\n").split(b"\n"))
    assert sorted(lines + rejected) == [(n,) for n in range(2, n_lines + 1) if n not in (4, 7)]  # blank lines


@pytest.mark.parametrize(
    "name, delimiter, text",
    [
        ("trailing_empty_columns", ",", lambda h, r: [h + ",,"] + [x + ",," for x in r]),
        ("unnamed_column_in_the_middle", ",", lambda h, r: [h.replace(",price", ",,price")]
         + [x.replace(",9.99", ",junk,9.99") for x in r]),
        ("quoted_header", ",", lambda h, r: [",".join(f'"{c}"' for c in h.split(","))] + r),
        ("utf8_bom_and_crlf", ",", lambda h, r: ["\ufeff" + h] + r),
        ("semicolons", ";", lambda h, r: [x.replace(",", ";") for x in [h] + r]),
        ("tabs", "\t", lambda h, r: [x.replace(",", "\t") for x in [h] + r]),
    ],
)
def test_export_shapes_shops_really_send_load_every_line(tmp_path, name, delimiter, text):
    """Spreadsheet exports (trailing or unnamed empty columns), quoted headers, a BOM, ';'
    or tab delimiters: every line loads with the right fields; unnamed columns are
    ignored with a warning naming them."""
    from recs_pipeline.sources.loader import load_event_files

    header = HEADER.strip()
    rows = [f"U{k},I{k},view,2026-09-01T10:0{k}:00Z,1,9.99,S{k}," for k in range(1, 4)]
    newline = "\r\n" if "crlf" in name else "\n"
    path = tmp_path / "events" / "2026-09-01.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(newline.join(text(header, rows)).encode("utf-8") + newline.encode())
    source = CsvSource(tmp_path, SourceSettings(delimiter=delimiter))
    con = duckdb.connect()
    report = load_event_files(con, source, [date(2026, 9, 1)])
    assert report.rejected == []
    assert con.execute(
        "SELECT source_line, user_id, item_id, event_ts, price, parse_error FROM raw.events ORDER BY 1"
    ).fetchall() == [(k + 1, f"U{k}", f"I{k}", f"2026-09-01T10:0{k}:00Z", "9.99", None) for k in range(1, 4)]
    if name == "trailing_empty_columns":
        assert report.warnings == [
            "events/2026-09-01.csv: line 1 (header): 2 trailing column(s) without a name (column 9, 10) ignored"]
    elif name == "unnamed_column_in_the_middle":
        assert report.warnings == ["events/2026-09-01.csv: line 1 (header): 1 column(s) without a name (column 6) ignored"]
    else:
        assert report.warnings == []


def test_a_truly_repeated_header_field_is_named_alone(tmp_path):
    write(tmp_path / "events" / "2026-09-01.csv",
          HEADER.strip() + ",,item_id\nU1,I1,view,2026-09-01T10:00:00Z,1,9.99,S1,,,I1\n")  # fmt: skip
    with pytest.raises(SourceError) as raised:
        load_event_days(duckdb.connect(), CsvSource(tmp_path, SourceSettings()), [date(2026, 9, 1)])
    message = str(raised.value)
    assert message.endswith("line 1 (header) repeats the field(s) item_id ('item_id' in columns 2, 10)"), message
    assert raised.value.line == 1


def test_timestamp_format_is_read_from_toml_and_environment(tmp_path):
    from recs_pipeline.settings import load_settings

    config = tmp_path / "recs.toml"
    config.write_text('[source]\nkind = "generic"\npath = "."\ntimestamp_format = "%d/%m/%Y %H:%M"\n')
    assert load_settings({"RECS_CONFIG": str(config)}).source.timestamp_format == ("%d/%m/%Y %H:%M",)
    env = {"RECS_CONFIG": str(config), "RECS_TIMESTAMP_FORMAT": "%m/%d/%Y %H:%M|%Y%m%d%H%M%S"}
    assert load_settings(env).source.timestamp_format == ("%m/%d/%Y %H:%M", "%Y%m%d%H%M%S")
    # Online Retail knows the layout UCI publishes; the synthetic shop needs none.
    assert load_settings({"RECS_SOURCE": "online_retail"}).source.timestamp_format == ("%m/%d/%Y %H:%M",)
    assert load_settings({}).source.timestamp_format == ()


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"a,b\nc,d\n", b"a,b"),
        (b"a,b\r\nc,d\r\n", b"a,b"),
        (b"a,b\rc,d\r", b"a,b"),  # CR-only line ends
        (b"a,b", b"a,b"),  # no line break at all
        (b"", b""),
        (b"x" * 50 + b"\r\nc\n", b"x" * 50),  # a header longer than a chunk, CR at a chunk's end
        (b"x" * 50 + b"\rc", b"x" * 50),  # CR-only, longer than a chunk
    ],
)
def test_first_line_reads_the_header_across_chunks(tmp_path, content, expected):
    from recs_pipeline.sources.base import first_line

    path = tmp_path / "f.csv"
    path.write_bytes(content)
    # Chunks of 7 bytes: the line break falls inside, at the end of, and past the first chunk.
    assert first_line(path, chunk_bytes=7) == expected
    assert first_line(path) == expected
