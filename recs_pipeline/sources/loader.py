"""Load source files into the raw layer of the warehouse (``raw.events``, ``raw.items``, ``raw.users``).

Loads are idempotent: a day's events are deleted and inserted in one transaction, so
re-loading a day replaces it and a crash leaves the previous version intact.

With a :class:`~recs_pipeline.privacy.Pseudonymizer` (the Dagster assets always pass
one) user ids are replaced by keyed pseudonyms on the way in: the distinct ids of the
load are hashed once in Python and swapped in by a join, the user field of malformed
lines (``raw_line``) is redacted the same way, and rows of suppressed (erased) users
are dropped (the suppression list holds SHA-256 digests of pseudonyms: the load's
distinct pseudonyms are hashed and flagged, never its rows). No shop user id ever
reaches the warehouse. Without one, ids are loaded as they are (unit tests of the
parsing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date

import duckdb
import pandas as pd

from recs_pipeline.privacy.files import event_line_layout
from recs_pipeline.privacy.lines import redact_line, split_line
from recs_pipeline.privacy.pseudonym import Pseudonymizer, normalise_id, register_pseudonyms
from recs_pipeline.privacy.suppression import names_suppressed, suppressed_digests
from recs_pipeline.sources.base import (
    LINEAGE_COLUMNS,
    RAW_EVENT_COLUMNS,
    RAW_ITEM_COLUMNS,
    RAW_USER_COLUMNS,
    Source,
    SourceError,
    physical_lines,
)
from recs_pipeline.warehouse import replace_table

RAW_EVENT_TABLE_COLUMNS = ("partition_date", *RAW_EVENT_COLUMNS, *LINEAGE_COLUMNS, "loaded_at")
RAW_EVENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS raw.events ("
    "partition_date DATE NOT NULL, "
    + ", ".join(f"{c} VARCHAR" for c in RAW_EVENT_COLUMNS)
    + ", source_file VARCHAR, source_line BIGINT, parse_error VARCHAR, raw_line VARCHAR, "
    "loaded_at TIMESTAMP)"
)
_RAW_EVENT_TABLE_LIST = ", ".join(RAW_EVENT_TABLE_COLUMNS)


@dataclass(frozen=True)
class DayLoad:
    day: date
    rows: int
    malformed_lines: int
    source_file: str | None
    distinct_users: int = 0  # ids pseudonymised
    suppressed_rows: int = 0  # rows of erased users left out
    pseudonymise_seconds: float = 0.0


_NORMALISED_USER = "NULLIF(trim(user_id), '')"  # what staging does to the id; hashed in this form


def _register_suppressed(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Flag the erased users of the load: column ``suppressed`` of ``_user_pseudonyms``
    (one row per distinct id), true where the pseudonym's SHA-256 is on the suppression
    list. Only the mapping is hashed, never the events; when the list is empty nothing
    is done at all (no column: the SELECTs then have no suppression filter, see
    :func:`_not_suppressed`). Returns the suppressed digests."""
    suppressed = suppressed_digests(con)
    if suppressed:
        con.execute("CREATE OR REPLACE TEMP TABLE _suppressed (pseudonym_sha256 VARCHAR)")
        con.executemany("INSERT INTO _suppressed VALUES (?)", [[d] for d in sorted(suppressed)])
        con.execute("ALTER TABLE _user_pseudonyms ADD COLUMN suppressed BOOLEAN")
        con.execute(
            "UPDATE _user_pseudonyms SET suppressed = true "
            "WHERE sha256(pseudonym) IN (SELECT pseudonym_sha256 FROM _suppressed)"
        )
    return suppressed


def _not_suppressed(suppressed: set[str]) -> str:
    """SQL condition keeping the rows of users not flagged by :func:`_register_suppressed`
    (``p``: the joined ``_user_pseudonyms``); always true when nobody is suppressed."""
    return "NOT coalesce(p.suppressed, false)" if suppressed else "true"


def _drop_temp_tables(con: duckdb.DuckDBPyConnection, names: tuple[str, ...]) -> None:
    for name in names:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def _pseudonymised_day_sql(
    con: duckdb.DuckDBPyConnection, source: Source, day: date, select: str, pseudonymizer: Pseudonymizer
) -> tuple[str, int, set[str]]:
    """The day's rows with pseudonyms for ids and redacted raw lines, erased users left
    out. Creates the temp tables it reads; returns (SELECT, distinct users, suppressed)."""
    mapping = register_pseudonyms(
        con, "_user_pseudonyms", f"SELECT {_NORMALISED_USER} FROM ({select})", pseudonymizer
    )
    suppressed = _register_suppressed(con)
    # Malformed lines keep their text for debugging, with the user field pseudonymised.
    layout = event_line_layout(source, day)
    malformed = con.execute(
        f"SELECT source_file, source_line, raw_line FROM ({select}) WHERE raw_line IS NOT NULL"
    ).fetchall()
    redacted = []
    for source_file, source_line, raw_line in malformed:
        text, found = redact_line(raw_line, layout, mapping, pseudonymizer.one)
        redacted.append((source_file, source_line, text, names_suppressed(found, suppressed)))
    _store_redacted_lines(con, redacted, by_day=False)
    columns = ", ".join("p.pseudonym AS user_id" if c == "user_id" else f"e.{c}" for c in RAW_EVENT_COLUMNS)
    sql = f"""
        SELECT {columns}, e.source_file, e.source_line, e.parse_error,
               CASE WHEN e.raw_line IS NOT NULL THEN r.raw_line END AS raw_line
        FROM ({select}) e
        LEFT JOIN _user_pseudonyms p ON p.raw_id = NULLIF(trim(e.user_id), '')
        LEFT JOIN _redacted_lines r
          ON e.raw_line IS NOT NULL AND r.source_line = e.source_line
         AND r.source_file IS NOT DISTINCT FROM e.source_file
        WHERE NOT coalesce(r.suppressed, false) AND {_not_suppressed(suppressed)}
    """
    return sql, len(mapping), suppressed


REJECTED_FILES_DDL = (
    "CREATE TABLE IF NOT EXISTS quality.rejected_files ("
    "partition_date DATE NOT NULL, source_file VARCHAR, reason VARCHAR NOT NULL, first_offending_line BIGINT, "
    "rejected_lines BIGINT NOT NULL, detected_at TIMESTAMP NOT NULL, resolved_at TIMESTAMP)"
)


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute(RAW_EVENTS_DDL)
    # A warehouse made before the column existed gains it (NULL for the rows it holds);
    # inserts name their columns, so the column's place in the table does not matter.
    for column in RAW_EVENT_COLUMNS:
        con.execute(f"ALTER TABLE raw.events ADD COLUMN IF NOT EXISTS {column} VARCHAR")
    con.execute("CREATE SCHEMA IF NOT EXISTS quality")
    con.execute(REJECTED_FILES_DDL)


def record_rejected_files(con: duckdb.DuckDBPyConnection, report: LoadReport) -> None:
    """Keep ``quality.rejected_files`` current, in one transaction: the days of this load
    that were rejected get a row each (replacing an earlier open verdict for the day),
    and open rows of days that loaded now are closed (``resolved_at``), kept as history."""
    ensure_raw_schema(con)
    loaded = [load.day for load in report.loads]
    con.execute("BEGIN TRANSACTION")
    try:
        if report.rejected:
            con.execute(
                f"DELETE FROM quality.rejected_files WHERE resolved_at IS NULL "
                f"AND partition_date IN ({_day_list(report.rejected_days)})"
            )
            con.executemany(
                "INSERT INTO quality.rejected_files VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP, NULL)",
                [[r.day, r.source_file, r.reason, r.first_offending_line, r.rejected_lines] for r in report.rejected],
            )
        if loaded:
            con.execute(
                "UPDATE quality.rejected_files SET resolved_at = now()::TIMESTAMP "
                f"WHERE resolved_at IS NULL AND partition_date IN ({_day_list(loaded)})"
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class RejectedFile:
    """A day file the load refused: nothing of it was written (the day keeps the version
    loaded before, if any), and its lines are counted as rejected."""

    day: date
    source_file: str | None  # None when the day has no file at all
    reason: str  # the error, naming file, line and field
    first_offending_line: int | None
    rejected_lines: int  # the file's lines after the header


@dataclass(frozen=True)
class LoadReport:
    loads: list[DayLoad]
    rejected: list[RejectedFile]
    warnings: list[str]  # loadable oddities, e.g. columns without a name

    @property
    def rejected_days(self) -> list[date]:
        return [r.day for r in self.rejected]


# What a day file may raise that stops that file alone: the source's own checks, and
# whatever DuckDB refuses in a file the checks let through.
_FILE_ERRORS = (SourceError, duckdb.Error)


def load_event_files(
    con: duckdb.DuckDBPyConnection, source: Source, days: list[date], pseudonymizer: Pseudonymizer | None = None
) -> LoadReport:
    """Replace the given days of ``raw.events`` with the source's rows for them (user ids
    pseudonymised when a ``pseudonymizer`` is given), each bad file isolated: a day whose
    file fails (header, schema drift, two files, unreadable) is not written and comes back
    as a RejectedFile, while every other day loads.

    Sources that can read a range of days at once (``loads_ranges``) load the good days in
    batches of files, each batch in one scan and one transaction; the rows, lineage and
    pseudonyms are the same as loading the days one by one. A batch that fails as a whole
    is loaded again day by day, so that only its bad file is rejected."""
    ensure_raw_schema(con)
    warnings = source.header_warnings(days)
    if not source.loads_ranges():
        loads, rejected = _load_days_one_by_one(con, source, days, pseudonymizer)
        return LoadReport(loads, rejected, warnings)
    loadable, errors = source.check_event_days(days)
    rejected = [_rejected(source, day, exc) for day, exc in errors.items()]
    loads = []
    for batch in _batches(source, loadable):
        try:
            loads += _load_range(con, source, batch, pseudonymizer)
        except _FILE_ERRORS:
            more_loads, more_rejected = _load_days_one_by_one(con, source, batch, pseudonymizer)
            loads += more_loads
            rejected += more_rejected
    rejected.sort(key=lambda r: r.day)
    return LoadReport(loads, rejected, warnings)


def load_event_days(
    con: duckdb.DuckDBPyConnection, source: Source, days: list[date], pseudonymizer: Pseudonymizer | None = None
) -> list[DayLoad]:
    """load_event_files, strict: every good day loads, then the first bad day's error is raised."""
    report = load_event_files(con, source, days, pseudonymizer)
    if report.rejected:
        raise SourceError(report.rejected[0].reason, report.rejected[0].first_offending_line)
    return report.loads


def _load_days_one_by_one(
    con: duckdb.DuckDBPyConnection, source: Source, days: list[date], pseudonymizer: Pseudonymizer | None
) -> tuple[list[DayLoad], list[RejectedFile]]:
    loads, rejected = [], []
    for day in days:
        try:
            loads.append(load_one_day(con, source, day, pseudonymizer))
        except _FILE_ERRORS as exc:
            _drop_temp_tables(con, ("_user_pseudonyms", "_suppressed", "_redacted_lines"))
            rejected.append(_rejected(source, day, exc))
    return loads, rejected


def _rejected(source: Source, day: date, exc: Exception) -> RejectedFile:
    path = source.file_for(day)
    if isinstance(exc, SourceError):
        reason, line = str(exc), exc.line
    else:  # DuckDB refused something the checks let through: name the file and the error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason, line = f"{path}: {type(exc).__name__}: {first}", None
    n_lines = 0
    if path is not None and path.is_file():
        n_lines = max(physical_lines(path) - 1, 0)
    relative = None
    if path is not None:
        try:
            relative = str(path.relative_to(source.root))
        except ValueError:
            relative = str(path)
    return RejectedFile(day, relative, reason, line, n_lines)


# Files of one batch, in bytes of CSV: a batch is held in memory (temp tables) while it
# loads. 60 days of the L shop (~10M lines) are ~0.7 GB.
MAX_BATCH_BYTES = 2 * 1024**3


def _batches(source: Source, days: list[date]) -> list[list[date]]:
    """The days in order, cut into batches of at most MAX_BATCH_BYTES of files (at least one day each)."""
    batches: list[list[date]] = []
    size = 0
    for day in days:
        day_size = source.file_for(day).stat().st_size
        if not batches or size + day_size > MAX_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(day)
        size += day_size
    return batches


def load_one_day(
    con: duckdb.DuckDBPyConnection, source: Source, day: date, pseudonymizer: Pseudonymizer | None = None
) -> DayLoad:
    """Replace one day of ``raw.events`` (the day-by-day load, for any source)."""
    ensure_raw_schema(con)
    cols = ", ".join(RAW_EVENT_COLUMNS)
    # Parse outside the transaction: temp tables only, nothing visible yet.
    select = source.events_sql(con, day)
    n_users, n_source_rows, seconds, suppressed = 0, None, 0.0, set()
    if pseudonymizer is not None:
        started = time.perf_counter()
        raw_select = select
        select, n_users, suppressed = _pseudonymised_day_sql(con, source, day, raw_select, pseudonymizer)
        seconds = time.perf_counter() - started
        if suppressed:
            n_source_rows = con.execute(f"SELECT count(*) FROM ({raw_select})").fetchall()[0][0]
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM raw.events WHERE partition_date = ?", [day])
        con.execute(
            f"INSERT INTO raw.events ({_RAW_EVENT_TABLE_LIST}) SELECT ?::DATE, {cols}, source_file, source_line, parse_error, raw_line, "
            f"now()::TIMESTAMP FROM ({select})",
            [day],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    rows, malformed, file = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE parse_error LIKE 'malformed_line%'), any_value(source_file) FROM raw.events WHERE partition_date = ?",
        [day],
    ).fetchall()[0]
    _drop_temp_tables(con, ("_user_pseudonyms", "_suppressed", "_redacted_lines"))
    n_suppressed = 0 if n_source_rows is None else n_source_rows - rows
    return DayLoad(day, rows, malformed, file, n_users, n_suppressed, seconds)


def _day_list(days: list[date]) -> str:
    return ", ".join(f"DATE '{d.isoformat()}'" for d in days)


def _load_range(
    con: duckdb.DuckDBPyConnection, source: Source, days: list[date], pseudonymizer: Pseudonymizer | None
) -> list[DayLoad]:
    """Replace several days of ``raw.events`` in one transaction, read in one scan."""
    users: dict[date, int] = {}
    source_rows: dict[date, int] | None = None
    seconds = 0.0
    try:
        # Parse outside the transaction: temp tables only, nothing visible yet.
        select = source.events_range_sql(con, days)
        if pseudonymizer is not None:
            started = time.perf_counter()
            raw_select = select
            select, users, suppressed = _pseudonymised_range_sql(con, source, days, raw_select, pseudonymizer)
            seconds = time.perf_counter() - started
            if suppressed:
                source_rows = dict(
                    con.execute(f"SELECT partition_date, count(*) FROM ({raw_select}) GROUP BY 1").fetchall()
                )
        _replace_days(con, days, select)
    finally:
        source.drop_range_tables(con)
        _drop_temp_tables(con, ("_user_pseudonyms", "_suppressed", "_redacted_lines", "_day_users"))
    loads = []
    for day, (rows, malformed, file) in _day_counts(con, days).items():
        n_suppressed = 0 if source_rows is None else source_rows.get(day, 0) - rows
        # The pseudonymising time is the batch's, spread over its days.
        loads.append(DayLoad(day, rows, malformed, file, users.get(day, 0), n_suppressed, seconds / len(days)))
    return loads


def _replace_days(con: duckdb.DuckDBPyConnection, days: list[date], select: str) -> None:
    """Delete the days and insert ``select`` (with partition_date) in one transaction."""
    cols = ", ".join(RAW_EVENT_COLUMNS)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM raw.events WHERE partition_date IN ({_day_list(days)})")
        con.execute(
            f"INSERT INTO raw.events ({_RAW_EVENT_TABLE_LIST}) SELECT partition_date, {cols}, source_file, source_line, parse_error, "
            f"raw_line, now()::TIMESTAMP FROM ({select})"
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _day_counts(con: duckdb.DuckDBPyConnection, days: list[date]) -> dict[date, tuple[int, int, str | None]]:
    """Each day's (rows, malformed lines, source file) in raw.events, in the order of ``days``."""
    found = {
        day: (rows, malformed, file)
        for day, rows, malformed, file in con.execute(
            "SELECT partition_date, count(*), count(*) FILTER (WHERE parse_error LIKE 'malformed_line%'), "
            f"any_value(source_file) FROM raw.events WHERE partition_date IN ({_day_list(days)}) GROUP BY 1"
        ).fetchall()
    }
    return {day: found.get(day, (0, 0, None)) for day in days}


def _pseudonymised_range_sql(
    con: duckdb.DuckDBPyConnection, source: Source, days: list[date], select: str, pseudonymizer: Pseudonymizer
) -> tuple[str, dict[date, int], set[str]]:
    """_pseudonymised_day_sql for several days (``select`` has partition_date): each
    distinct id of the range is hashed once. Returns (SELECT, distinct users per day,
    suppressed)."""
    # Each day's ids: what the day-by-day load would hash for that day.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _day_users AS
            SELECT DISTINCT partition_date, {_NORMALISED_USER} AS raw_id FROM ({select})
            WHERE {_NORMALISED_USER} IS NOT NULL"""
    )
    mapping = register_pseudonyms(con, "_user_pseudonyms", "SELECT raw_id FROM _day_users", pseudonymizer)
    users = dict(con.execute("SELECT partition_date, count(*) FROM _day_users GROUP BY 1").fetchall())
    suppressed = _register_suppressed(con)
    _register_redacted_lines(con, source, select, mapping, pseudonymizer, suppressed)
    columns = ", ".join("p.pseudonym AS user_id" if c == "user_id" else f"e.{c}" for c in RAW_EVENT_COLUMNS)
    sql = f"""
        SELECT e.partition_date, {columns}, e.source_file, e.source_line, e.parse_error,
               CASE WHEN e.raw_line IS NOT NULL THEN r.raw_line END AS raw_line
        FROM ({select}) e
        LEFT JOIN _user_pseudonyms p ON p.raw_id = NULLIF(trim(e.user_id), '')
        LEFT JOIN _redacted_lines r
          ON e.raw_line IS NOT NULL AND r.partition_date = e.partition_date AND r.source_line = e.source_line
         AND r.source_file IS NOT DISTINCT FROM e.source_file
        WHERE NOT coalesce(r.suppressed, false) AND {_not_suppressed(suppressed)}
    """
    return sql, users, suppressed


def _register_redacted_lines(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    select: str,
    mapping: dict[str, str],
    pseudonymizer: Pseudonymizer,
    suppressed: set[str],
) -> None:
    """Temp table _redacted_lines: each malformed line's text with its user field (and any
    field holding a user id of its day) pseudonymised, and whether it names an erased
    user. Redacted as the day-by-day load does: ``known`` ids are the line's day's ids,
    looked up for just the values the lines hold (few lines, few values)."""
    malformed = con.execute(
        f"SELECT partition_date, source_file, source_line, raw_line FROM ({select}) WHERE raw_line IS NOT NULL"
    ).fetchall()
    layouts = {day: event_line_layout(source, day) for day in {m[0] for m in malformed}}
    values = set()
    for day, _, _, raw_line in malformed:
        for field in split_line(raw_line, layouts[day]):
            value = normalise_id(field)
            if value is not None:
                values.update((value, value[:-2]) if value.endswith(".0") else (value,))
    known: dict[date, dict[str, str]] = {day: {} for day in layouts}
    if values:
        con.register("_line_values_frame", pd.DataFrame({"v": sorted(values)}, dtype=object))
        try:
            for day, raw_id in con.execute(
                "SELECT partition_date, raw_id FROM _day_users WHERE raw_id IN (SELECT v::VARCHAR FROM _line_values_frame)"
            ).fetchall():
                if day in known:
                    known[day][raw_id] = mapping[raw_id]
        finally:
            con.unregister("_line_values_frame")
    redacted = []
    for day, source_file, source_line, raw_line in malformed:
        text, found = redact_line(raw_line, layouts[day], known[day], pseudonymizer.one)
        redacted.append((day, source_file, source_line, text, names_suppressed(found, suppressed)))
    _store_redacted_lines(con, redacted, by_day=True)


def _store_redacted_lines(con: duckdb.DuckDBPyConnection, rows: list[tuple], by_day: bool) -> None:
    """Temp table _redacted_lines from (partition_date if ``by_day``, source_file,
    source_line, raw_line, suppressed) tuples."""
    columns = (["partition_date"] if by_day else []) + ["source_file", "source_line", "raw_line", "suppressed"]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.astype({"source_file": object, "source_line": "int64", "raw_line": object, "suppressed": bool})
    day = "partition_date::DATE AS partition_date, " if by_day else ""
    con.register("_redacted_frame", frame)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _redacted_lines AS SELECT {day}source_file::VARCHAR AS source_file, "
            "source_line::BIGINT AS source_line, raw_line::VARCHAR AS raw_line, suppressed::BOOLEAN AS suppressed "
            "FROM _redacted_frame"
        )
    finally:
        con.unregister("_redacted_frame")


def load_items(con: duckdb.DuckDBPyConnection, source: Source) -> int:
    cols = ", ".join(RAW_ITEM_COLUMNS)
    return replace_table(con, "raw.items", f"SELECT {cols}, source_file, source_line FROM ({source.items_sql(con)})")


def load_users(con: duckdb.DuckDBPyConnection, source: Source, pseudonymizer: Pseudonymizer | None = None) -> int:
    """Replace ``raw.users`` with the source's user snapshot: the canonical columns only
    (names, e-mails, addresses and other direct identifiers in the file never load), ids
    pseudonymised and erased users left out when a ``pseudonymizer`` is given."""
    cols = ", ".join(RAW_USER_COLUMNS)
    select = source.users_sql(con)
    if pseudonymizer is None:
        return replace_table(con, "raw.users", f"SELECT {cols}, source_file, source_line FROM ({select})")
    register_pseudonyms(con, "_user_pseudonyms", f"SELECT {_NORMALISED_USER} FROM ({select})", pseudonymizer)
    suppressed = _register_suppressed(con)
    columns = ", ".join("p.pseudonym AS user_id" if c == "user_id" else f"e.{c}" for c in RAW_USER_COLUMNS)
    try:
        return replace_table(
            con,
            "raw.users",
            f"""SELECT {columns}, e.source_file, e.source_line
                FROM ({select}) e LEFT JOIN _user_pseudonyms p ON p.raw_id = NULLIF(trim(e.user_id), '')
                WHERE {_not_suppressed(suppressed)}""",
        )
    finally:
        _drop_temp_tables(con, ("_user_pseudonyms", "_suppressed", "_parsed_users", "_rejects_users"))
