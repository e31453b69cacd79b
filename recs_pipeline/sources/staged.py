"""The raw layer on any engine: the same loader, staged in a scratch DuckDB.

The file adapters, lineage (``source_file``, ``source_line``), malformed-line handling,
pseudonyms and suppression live in :mod:`recs_pipeline.sources.loader`, written for a
DuckDB connection. On another engine (Spark) each load runs that very code against an
in-memory DuckDB on the driver, holding only the days being loaded and the lists the
load reads (the suppression list, the open rejected-file verdicts); the result is then
handed to the engine: each loaded day replaces its partition of ``raw.events``, the
snapshots and ``quality.rejected_files`` replace their tables. The rows are therefore
exactly those the DuckDB engine loads, value for value.

What bounds this: a batch of day files is parsed in the driver's memory (the loader's
batches are at most ``MAX_BATCH_BYTES`` of CSV; one day at a time when they are larger).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import duckdb

from recs_pipeline.engine.base import Session
from recs_pipeline.privacy.pseudonym import Pseudonymizer
from recs_pipeline.privacy.suppression import SUPPRESSED_TABLE, ensure_privacy_schema
from recs_pipeline.sources.base import RAW_EVENT_COLUMNS, Source
from recs_pipeline.sources.loader import (
    LoadReport,
    ensure_raw_schema,
    load_event_files,
    load_items,
    load_users,
    record_rejected_files,
)

REJECTED_FILES = "quality.rejected_files"


def add_missing_raw_columns(db: Session) -> None:
    """Give a ``raw.events`` made by an older version the canonical columns it lacks
    (``send_id`` came with the campaign messages); its rows get NULL."""
    if db.table_exists("raw.events"):
        have = {name for name, _ in db.columns("raw.events")}
        missing = [c for c in RAW_EVENT_COLUMNS if c not in have]
        if missing:
            db.add_text_columns("raw.events", missing)


@contextmanager
def scratch(db: Session, copies: tuple[str, ...] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with the raw schema and a copy of each of ``copies`` that
    exists in the warehouse."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        ensure_raw_schema(con)
        ensure_privacy_schema(con)
        for table in copies:
            if db.table_exists(table):
                frame = db.arrow(f"SELECT * FROM {table}")
                con.register("_copied", frame)
                con.execute(f"DELETE FROM {table}")
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _copied")
                con.unregister("_copied")
        yield con
    finally:
        con.close()


def load_event_files_into(
    db: Session, source: Source, days: list[date], pseudonymizer: Pseudonymizer | None = None
) -> LoadReport:
    """:func:`recs_pipeline.sources.loader.load_event_files` and
    :func:`record_rejected_files` on the engine behind ``db``: loaded days replace their
    partitions of ``raw.events`` (all in one write); days not loaded (rejected) keep what they had."""
    with scratch(db, (SUPPRESSED_TABLE, REJECTED_FILES)) as con:
        report = load_event_files(con, source, days, pseudonymizer)
        record_rejected_files(con, report)
        if report.loads:
            add_missing_raw_columns(db)
            # Every loaded day in one write (one dynamic partition overwrite on Spark):
            # a write per day cost about a second each of fixed overhead.
            days = [load.day for load in report.loads]
            rows = con.sql(
                f"SELECT * FROM raw.events WHERE partition_date IN ({', '.join('?' * len(days))})", params=days
            ).to_arrow_table()
            db.replace_partitions("raw.events", rows, "partition_date", days)
        if not db.table_exists("raw.events"):  # nothing loaded: the table exists all the same
            db.replace_table("raw.events", con.sql("SELECT * FROM raw.events").to_arrow_table())
        db.replace_table(REJECTED_FILES, con.sql(f"SELECT * FROM {REJECTED_FILES}").to_arrow_table())
    return report


def load_items_into(db: Session, source: Source) -> int:
    with scratch(db) as con:
        load_items(con, source)
        return db.replace_table("raw.items", con.sql("SELECT * FROM raw.items").to_arrow_table())


def load_users_into(db: Session, source: Source, pseudonymizer: Pseudonymizer | None = None) -> int:
    with scratch(db, (SUPPRESSED_TABLE,)) as con:
        load_users(con, source, pseudonymizer)
        return db.replace_table("raw.users", con.sql("SELECT * FROM raw.users").to_arrow_table())
