"""Retention: line-level event history older than N days is dropped.

The cut-off is relative to the newest day loaded in ``raw.events`` (not to today), so
re-running an old range or a shop whose files arrive late behaves the same. Every
warehouse table with a ``partition_date`` column holds one row per source line of its
day (``raw.events``, the dbt models ``staging.int_events_validated``,
``staging.stg_events``, ``quality.quarantine_events``, ``quality.duplicate_events``,
and the per-day ``quality.event_reconciliation``); rows of days before the cut-off are
deleted from all of them together, so each kept day still reconciles and no dropped
day survives in a copy. Tables rebuilt from these (features, model, lists) follow at
their next rebuild in the same run.

Tables that accumulate history of their own by another date column are trimmed in the
same transaction by that column (``DATED_TABLES``): ``serving.published_recommendations``,
the log of the lists shown to the shop, by ``list_date`` (the day a list was shown).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb

from recs_pipeline.engine.base import Session

PARTITION_COLUMN = "partition_date"
SKIP_SCHEMAS = ("privacy",)
# Tables without a partition_date that keep growing day by day: table -> its date column.
DATED_TABLES = {"serving.published_recommendations": "list_date"}


@dataclass
class RetentionReport:
    retention_days: int | None
    newest_day: date | None = None
    cutoff: date | None = None  # rows of days before this are gone
    rows_dropped: dict[str, int] = field(default_factory=dict)

    @property
    def total_dropped(self) -> int:
        return sum(self.rows_dropped.values())

    def describe(self) -> str:
        if self.retention_days is None:
            return "retention off: every day is kept"
        if self.cutoff is None:
            return f"retention {self.retention_days} days: nothing loaded yet"
        return (
            f"retention {self.retention_days} days: kept days from {self.cutoff} (newest {self.newest_day}); "
            f"{self.total_dropped} row(s) dropped"
        )


def partitioned_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every base table with a ``partition_date`` column, raw first (schema.name)."""
    rows = con.execute(
        """SELECT c.table_schema, c.table_name
           FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
           WHERE c.column_name = ? AND t.table_type = 'BASE TABLE'
             AND t.table_catalog = current_database()
           ORDER BY c.table_schema <> 'raw', c.table_schema, c.table_name""",
        [PARTITION_COLUMN],
    ).fetchall()
    return [f"{schema}.{name}" for schema, name in rows if schema not in SKIP_SCHEMAS]


def dated_tables(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The ``DATED_TABLES`` that exist (and have their date column): table -> column."""
    found = {}
    for table, column in DATED_TABLES.items():
        schema, name = table.split(".", 1)
        exists = con.execute(
            """SELECT count(*) FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
               WHERE c.table_schema = ? AND c.table_name = ? AND c.column_name = ?
                 AND t.table_type = 'BASE TABLE' AND t.table_catalog = current_database()""",
            [schema, name, column],
        ).fetchall()[0][0]
        if exists:
            found[table] = column
    return found


def apply_retention(con: duckdb.DuckDBPyConnection, retention_days: int | None) -> RetentionReport:
    """Delete the rows of every partitioned table older than ``retention_days`` before
    the newest loaded day, and those of the ``DATED_TABLES`` by their date column, in
    one transaction. ``None`` keeps everything."""
    report = RetentionReport(retention_days)
    if retention_days is None:
        return report
    tables = {table: PARTITION_COLUMN for table in partitioned_tables(con)}
    if "raw.events" not in tables:
        return report
    newest = con.execute("SELECT max(partition_date) FROM raw.events").fetchall()[0][0]
    if newest is None:
        return report
    report.newest_day = newest
    report.cutoff = newest - timedelta(days=retention_days)
    tables.update({t: c for t, c in dated_tables(con).items() if t not in tables})
    con.execute("BEGIN TRANSACTION")
    try:
        for table, column in tables.items():
            # table comes from information_schema, quoted per part; column from code.
            schema, name = table.split(".", 1)
            n = con.execute(
                f'DELETE FROM "{schema}"."{name}" WHERE "{column}" < ?', [report.cutoff]
            ).fetchall()[0][0]
            if n:
                report.rows_dropped[table] = int(n)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def apply_retention_on(db: Session, retention_days: int | None) -> RetentionReport:
    """:func:`apply_retention` through the engine interface (engines without
    multi-table transactions, Spark): each table is trimmed atomically on its own, raw
    first. A run stopped half-way leaves some tables trimmed; the next run trims the
    rest (the cut-off depends only on the newest loaded day), so the days still agree."""
    report = RetentionReport(retention_days)
    if retention_days is None or not db.table_exists("raw.events"):
        return report
    newest = db.scalar("SELECT max(partition_date) FROM raw.events")
    if newest is None:
        return report
    report.newest_day = newest
    report.cutoff = newest - timedelta(days=retention_days)
    tables: dict[str, str] = {}
    for table in sorted(db.tables(), key=lambda t: (not t.startswith("raw."), t)):
        if table.split(".", 1)[0] in SKIP_SCHEMAS:
            continue
        columns = {c for c, _ in db.columns(table)}
        if PARTITION_COLUMN in columns:
            tables[table] = PARTITION_COLUMN
        elif table in DATED_TABLES and DATED_TABLES[table] in columns:
            tables[table] = DATED_TABLES[table]
    for table, column in tables.items():
        n = db.delete_rows(table, f"{column} < ?", [report.cutoff])
        if n:
            report.rows_dropped[table] = int(n)
    return report
