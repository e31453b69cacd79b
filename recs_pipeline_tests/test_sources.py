"""Source adapters and the raw loader on small hand-built files (and a few real days)."""

from __future__ import annotations

from datetime import date
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
