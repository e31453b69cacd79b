"""The canonical raw schema and the contract every source adapter fulfils.

A source adapter turns one shop's files into rows of the canonical raw schema,
still as text: typing and validation happen in dbt (staging), so that a bad
value becomes a quarantine row with a reason instead of a load failure.

Every raw event row carries its lineage: the file it came from and its line in
that file. Lines the CSV parser cannot split into the expected fields are kept
too, with ``parse_error`` set and the original text in ``raw_line``.
"""

from __future__ import annotations

import csv
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

# Canonical event columns (all VARCHAR in raw.events).
RAW_EVENT_COLUMNS: tuple[str, ...] = (
    "user_id",
    "item_id",
    "event_type",
    "event_ts",
    "quantity",
    "price",
    "session_id",
    "search_query",
    "rating",
)
LINEAGE_COLUMNS: tuple[str, ...] = ("source_file", "source_line", "parse_error", "raw_line")
RAW_ITEM_COLUMNS: tuple[str, ...] = (
    "item_id",
    "title",
    "category",
    "brand",
    "price",
    "description",
    "in_stock",
    "launch_date",
)
RAW_USER_COLUMNS: tuple[str, ...] = (
    "user_id",
    "signup_date",
    "age_band",
    "gender",
    "country",
    "segment",
    "marketing_consent",
)

# Event types a source may emit. Anything else is quarantined as unknown_event_type.
CANONICAL_EVENT_TYPES: tuple[str, ...] = (
    "view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "return",
    "rating",
    "impression",
    "click",
)

_DAY_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class SourceError(ValueError):
    """A source file cannot be read as configured; the message names file and field."""


def sql_literal(value: str | Path) -> str:
    """Quote a value as a SQL string literal (DuckDB table functions take no parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """Quote an identifier that comes from a file header or a config mapping."""
    return '"' + name.replace('"', '""') + '"'


def days_from_filenames(folder: Path, pattern: str = "*.csv", regex: str | None = None) -> dict[date, Path]:
    """Map each day to its file, the day taken from the file name (``YYYY-MM-DD``)."""
    rx = re.compile(regex) if regex else _DAY_IN_NAME
    found: dict[date, Path] = {}
    for path in sorted(folder.glob(pattern)):
        match = rx.search(path.name)
        if not match:
            continue
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            continue
        if day in found:
            raise SourceError(f"two files for {day}: {found[day]} and {path}")
        found[day] = path
    return found


def read_header(path: Path, delimiter: str = ",", encoding: str = "utf-8") -> list[str]:
    """The column names in the first line of a delimited file (empty for an empty file)."""
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline()
    if not first.strip():
        return []
    return [c.strip().lstrip("\ufeff") for c in next(csv.reader([first], delimiter=delimiter))]


@dataclass(frozen=True)
class ParsedFile:
    """A delimited file read into a temp table with its line numbers and rejects."""

    table: str  # temp table with one VARCHAR column per header field plus source_line
    rejects: str  # temp table (line, csv_line, error) of lines that could not be split
    header: list[str]


def parse_delimited(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    name: str,
    required: tuple[str, ...] = (),
    delimiter: str = ",",
    header: list[str] | None = None,
    has_header: bool = True,
    encoding: str = "utf-8",
) -> ParsedFile:
    """Read a delimited file with DuckDB into temp tables, keeping line numbers.

    Everything is read as text with an explicit dialect (sniffing dirty files guesses
    wrong). Lines DuckDB cannot split land in the rejects table with their line number
    and original text. Good records are numbered in file order; mapping record number
    to physical line skips the rejected lines (records spanning several lines through
    quoted newlines are counted as one line).
    """
    columns = header if header is not None else read_header(path, delimiter, encoding)
    missing = [c for c in required if c not in columns]
    table, rejects = f"_parsed_{name}", f"_rejects_{name}"
    con.execute(f"DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {rejects}")
    if not columns:
        # An empty file: nothing to load, but the caller still gets (empty) tables.
        con.execute(f"CREATE TEMP TABLE {table} (source_line BIGINT)")
        con.execute(f"CREATE TEMP TABLE {rejects} (line BIGINT, csv_line VARCHAR, error VARCHAR)")
        if required:
            raise SourceError(f"{path}: the file is empty (expected a header with {', '.join(required)})")
        return ParsedFile(table, rejects, [])
    if missing:
        raise SourceError(
            f"{path}: line 1 (header) lacks required column(s) {', '.join(missing)}; found {', '.join(columns)}"
        )
    if len(set(columns)) != len(columns):
        raise SourceError(f"{path}: line 1 (header) repeats a column name: {', '.join(columns)}")
    col_spec = "{" + ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in columns) + "}"
    scan, errors = f"_scan_{name}", f"_err_{name}"
    con.execute(f"DROP TABLE IF EXISTS {scan}; DROP TABLE IF EXISTS {errors}")
    first_line = 2 if has_header else 1
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table}_records AS
        SELECT row_number() OVER () AS _record, *
        FROM read_csv({sql_literal(path)}, columns = {col_spec}, header = {str(has_header).lower()},
                      delim = {sql_literal(delimiter)}, quote = '"', escape = '"',
                      auto_detect = false, strict_mode = true, null_padding = false,
                      encoding = {sql_literal(encoding)}, max_line_size = 4000000,
                      store_rejects = true, rejects_scan = '{scan}', rejects_table = '{errors}')
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE {rejects} AS
        SELECT line, any_value(csv_line) AS csv_line,
               string_agg(DISTINCT error_type, '; ') AS error
        FROM {errors} GROUP BY line
        """
    )
    # Physical line of the k-th good record: the k-th data line that is not a reject.
    con.execute(
        f"""
        CREATE TEMP TABLE {table} AS
        WITH n AS (SELECT (SELECT count(*) FROM {table}_records) + (SELECT count(*) FROM {rejects}) AS total),
        good_lines AS (
            SELECT line, row_number() OVER (ORDER BY line) AS _record
            FROM (SELECT unnest(range({first_line}, {first_line} + (SELECT total FROM n))) AS line) l
            WHERE line NOT IN (SELECT line FROM {rejects})
        )
        SELECT g.line AS source_line, r.* EXCLUDE (_record)
        FROM {table}_records r JOIN good_lines g USING (_record)
        """
    )
    con.execute(f"DROP TABLE {table}_records; DROP TABLE IF EXISTS {scan}; DROP TABLE IF EXISTS {errors}")
    return ParsedFile(table, rejects, columns)


def rejects_as_events(parsed: ParsedFile, source_file: str) -> str:
    """SELECT turning unparseable lines into raw event rows (all canonical fields NULL)."""
    nulls = ", ".join(f"NULL::VARCHAR AS {c}" for c in RAW_EVENT_COLUMNS)
    return (
        f"SELECT {nulls}, {sql_literal(source_file)} AS source_file, line AS source_line, "
        f"'malformed_line: ' || error AS parse_error, csv_line AS raw_line FROM {parsed.rejects}"
    )


class Source(ABC):
    """One shop's files, read into the canonical raw schema."""

    kind: str = "abstract"
    root: Path  # the folder (or data set) the source reads

    @abstractmethod
    def event_files(self) -> dict[date, Path]:
        """Every day with events and the file that holds it (sources with one file for
        all days map each day to that file)."""

    @abstractmethod
    def events_sql(self, con: duckdb.DuckDBPyConnection, day: date) -> str:
        """A SELECT giving the day's events: RAW_EVENT_COLUMNS then LINEAGE_COLUMNS, as text.
        It may create temp tables on ``con`` first."""

    @abstractmethod
    def items_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        """A SELECT giving the catalogue snapshot (RAW_ITEM_COLUMNS, text, plus source_file)."""

    @abstractmethod
    def users_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        """A SELECT giving the user snapshot (RAW_USER_COLUMNS, text, plus source_file)."""

    def event_days(self) -> list[date]:
        return sorted(self.event_files())

    def describe(self) -> str:
        return self.kind


def select_mapped(
    table: str, available: list[str], mapping: dict[str, str], canonical: tuple[str, ...]
) -> str:
    """Select list renaming source columns to canonical ones; absent optional ones are NULL."""
    parts = []
    for col in canonical:
        src = mapping.get(col, col)
        parts.append(f"{quote_ident(src)}::VARCHAR AS {col}" if src in available else f"NULL::VARCHAR AS {col}")
    return ", ".join(parts)
