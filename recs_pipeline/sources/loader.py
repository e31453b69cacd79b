"""Load source files into the raw layer of the warehouse (``raw.events``, ``raw.items``, ``raw.users``).

Loads are idempotent: a day's events are deleted and inserted in one transaction, so
re-loading a day replaces it and a crash leaves the previous version intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from recs_pipeline.sources.base import RAW_EVENT_COLUMNS, RAW_ITEM_COLUMNS, RAW_USER_COLUMNS, Source
from recs_pipeline.warehouse import replace_table

RAW_EVENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS raw.events ("
    "partition_date DATE NOT NULL, "
    + ", ".join(f"{c} VARCHAR" for c in RAW_EVENT_COLUMNS)
    + ", source_file VARCHAR, source_line BIGINT, parse_error VARCHAR, raw_line VARCHAR, "
    "loaded_at TIMESTAMP)"
)


@dataclass(frozen=True)
class DayLoad:
    day: date
    rows: int
    malformed_lines: int
    source_file: str | None


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute(RAW_EVENTS_DDL)


def load_event_days(con: duckdb.DuckDBPyConnection, source: Source, days: list[date]) -> list[DayLoad]:
    """Replace the given days of ``raw.events`` with the source's rows for them."""
    ensure_raw_schema(con)
    cols = ", ".join(RAW_EVENT_COLUMNS)
    loads = []
    for day in days:
        # Parse outside the transaction: temp tables only, nothing visible yet.
        select = source.events_sql(con, day)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM raw.events WHERE partition_date = ?", [day])
            con.execute(
                f"INSERT INTO raw.events SELECT ?::DATE, {cols}, source_file, source_line, parse_error, raw_line, "
                f"now()::TIMESTAMP FROM ({select})",
                [day],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        rows, malformed, file = con.execute(
            "SELECT count(*), count(parse_error), any_value(source_file) FROM raw.events WHERE partition_date = ?",
            [day],
        ).fetchall()[0]
        loads.append(DayLoad(day, rows, malformed, file))
    return loads


def load_items(con: duckdb.DuckDBPyConnection, source: Source) -> int:
    cols = ", ".join(RAW_ITEM_COLUMNS)
    return replace_table(con, "raw.items", f"SELECT {cols}, source_file, source_line FROM ({source.items_sql(con)})")


def load_users(con: duckdb.DuckDBPyConnection, source: Source) -> int:
    cols = ", ".join(RAW_USER_COLUMNS)
    return replace_table(con, "raw.users", f"SELECT {cols}, source_file, source_line FROM ({source.users_sql(con)})")
