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
    # The campaign message a response belongs to (message_* events, unsubscribes, and a
    # purchase from a tracked link); NULL for everything else.
    "send_id",
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
    # Campaign messages and the answers to them (from the shop's e-mail or push tool).
    "message_sent",
    "message_open",
    "message_click",
    "unsubscribe",
)

_DAY_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class SourceError(ValueError):
    """A source file cannot be read as configured; the message names file and field.

    ``line`` is the first offending line of the file (1 for the header), when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        if line is None:
            found = re.search(r": line (\d+)\b", message)
            line = int(found.group(1)) if found else None
        self.line = line


def sql_literal(value: str | Path) -> str:
    """Quote a value as a SQL string literal (DuckDB table functions take no parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """Quote an identifier that comes from a file header or a config mapping."""
    return '"' + name.replace('"', '""') + '"'


def days_from_filenames(
    folder: Path, pattern: str = "*.csv", regex: str | None = None, strict: bool = True
) -> dict[date, Path]:
    """Map each day to its file, the day taken from the file name (``YYYY-MM-DD``).

    Two files for one day are an error (SourceError naming both); with ``strict=False``
    the first one is kept instead (to list the days, e.g. for the partitions, without
    failing on one bad day)."""
    found: dict[date, Path] = {}
    for day, paths in files_by_day(folder, pattern, regex).items():
        if len(paths) > 1 and strict:
            raise SourceError(f"two files for {day}: {paths[0]} and {paths[1]}")
        found[day] = paths[0]
    return found


def files_by_day(folder: Path, pattern: str = "*.csv", regex: str | None = None) -> dict[date, list[Path]]:
    """Every day named in a file name of ``folder`` and its files, in name order."""
    rx = re.compile(regex) if regex else _DAY_IN_NAME
    found: dict[date, list[Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob(pattern), key=str):  # str keys: Path comparisons are slow
        match = rx.search(path.name)
        if not match:
            continue
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            continue
        found.setdefault(day, []).append(path)
    return dict(sorted(found.items()))


UNNAMED_PREFIX = "_unnamed_"


def read_header(path: Path, delimiter: str = ",", encoding: str = "utf-8") -> list[str]:
    """The column names in the first line of a delimited file (empty for an empty file).

    A column without a name - spreadsheet exports often end every line with ``,,`` - is
    named ``_unnamed_<column number>``: it is read like any column and mapped to nothing
    (see unnamed_columns)."""
    first = first_line(path).decode(encoding, errors="replace")
    if not first.strip():
        return []
    try:
        # Spaces and tabs around a name go; a CR stays, so check_header sees mixed line ends.
        names = [c.strip(" \t").lstrip("\ufeff") for c in next(csv.reader([first], delimiter=delimiter, strict=True))]
    except csv.Error:
        # A quote or a carriage return the header cannot hold: read it as plain text so the
        # header check names what it found.
        names = [c.strip(" \t").strip('"').lstrip("\ufeff") for c in first.split(delimiter)]
    if len(names) > 1 or names[0]:
        names = [name or f"{UNNAMED_PREFIX}{k}" for k, name in enumerate(names, start=1)]
    return names


def first_line(path: Path, chunk_bytes: int = 1 << 16) -> bytes:
    """The file's first physical line as parse_delimited splits lines (up to the first LF,
    or the first CR in a file without LF), without its line break."""
    chunks: list[bytes] = []
    with path.open("rb") as fh:
        # Small chunks until the first LF or the end: a header is read for every file of a
        # load, several times (checks, drift, the scan), so only its first chunk should be
        # read. A CR-only file is read whole, as parse_delimited does.
        while chunk := fh.read(chunk_bytes):
            end = chunk.find(b"\n")
            if end >= 0:
                chunks.append(chunk[:end])
                line = b"".join(chunks)
                return line[:-1] if line.endswith(b"\r") else line
            chunks.append(chunk)
    head = b"".join(chunks)
    end = head.find(b"\r")
    return head if end < 0 else head[:end]


def physical_lines(path: Path) -> int:
    """How many lines parse_delimited sees in the file (LF, CRLF, or CR-only line ends)."""
    data = path.read_bytes()
    if not data:
        return 0
    separator = b"\n" if b"\n" in data or b"\r" not in data else b"\r"
    return data.count(separator) + (not data.endswith(separator))


def unnamed_columns(columns: list[str]) -> list[int]:
    """The (1-based) numbers of the header's columns that have no name."""
    return [k for k, name in enumerate(columns, start=1) if name == f"{UNNAMED_PREFIX}{k}"]


def header_warnings(path: Path | str, columns: list[str]) -> list[str]:
    """What a loadable header still deserves a word about (for the run's metadata)."""
    unnamed = unnamed_columns(columns)
    if not unnamed:
        return []
    trailing = unnamed == list(range(len(columns) - len(unnamed) + 1, len(columns) + 1))
    where = "trailing " if trailing else ""
    return [
        f"{path}: line 1 (header): {len(unnamed)} {where}column(s) without a name (column "
        f"{', '.join(map(str, unnamed))}) ignored"
    ]


# Longest physical line accepted (longer lines are kept as malformed, not loaded).
MAX_LINE_BYTES = 4_000_000
# A quoted field may run over at most this many physical lines (a quoted newline); when
# the joined lines still do not make one record of the right width, only the line that
# opened the quote is malformed and reading resumes on the next line.
MAX_RECORD_LINES = 50
_DELIMITERS = (",", ";", "\t", "|")
_OPEN_QUOTE = "open quote"
_REJECT_TEXT_CHARS = 10_000  # text kept of an over-long line (as DuckDB's reader keeps)
# Python's csv module refuses fields over 128 KiB by default; lines up to MAX_LINE_BYTES load.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))


def _header_hint(path: Path, columns: list[str], delimiter: str, required: tuple[str, ...]) -> str:
    """Why a header lacks required columns, when the cause is recognisable (else '')."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head.split(b"\n", 1)[0]:
        return " - the file looks UTF-16 encoded, the source expects UTF-8 text"
    if len(columns) == 1:
        for other in _DELIMITERS:
            if other != delimiter and other in columns[0]:
                names = [c.strip().lstrip("\ufeff") for c in columns[0].split(other)]
                if any(r in names for r in required):
                    return f" - the header is {other!r}-separated but the source expects {delimiter!r}"
    return ""


def check_header(path: Path, columns: list[str], delimiter: str, required: tuple[str, ...]) -> None:
    """Raise a SourceError naming the file, line 1 and the fields when the header cannot be
    read as the source expects (empty, required fields missing, fields repeated)."""
    if not columns:
        if required:
            what = "is empty" if path.stat().st_size == 0 else "has an empty first line"
            raise SourceError(
                f"{path}: line 1: the file {what}; expected a header with the field(s) {', '.join(required)}"
            )
        return
    if any("\r" in c or "\n" in c for c in columns):
        raise SourceError(
            f"{path}: line 1 (header) holds a carriage return inside the line (CR and LF line ends mixed): "
            "the first record would be read as header fields; re-export the file with one kind of line end"
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1}, key=columns.index)
    where = "; ".join(
        f"{c!r} in columns {', '.join(str(k) for k, name in enumerate(columns, start=1) if name == c)}"
        for c in repeated
    )
    missing = [c for c in required if c not in columns]
    if missing:
        hint = _header_hint(path, columns, delimiter, required)
        found = "" if "UTF-16" in hint else f"; found {', '.join(columns)}"
        also = f"; it repeats {', '.join(repeated)} ({where}) - renamed?" if repeated else ""
        raise SourceError(f"{path}: line 1 (header) lacks required field(s) {', '.join(missing)}{found}{also}{hint}")
    if repeated:
        raise SourceError(f"{path}: line 1 (header) repeats the field(s) {', '.join(repeated)} ({where})")


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
    """Read a delimited file with DuckDB into temp tables, keeping physical line numbers.

    Everything is read as text with an explicit dialect (sniffing dirty files guesses
    wrong). Lines that cannot be split into the header's fields land in the rejects table
    with their line number and original text; every other record keeps the number of the
    physical line it starts on. Blank lines are skipped (they hold no record).

    A record is one line, or several when a quoted field holds a newline. DuckDB's reader
    does the work when each record it finds is one line (the usual case, checked by
    counting); otherwise - quoted newlines, an unterminated quote (which would swallow
    the rest of the file), a stray carriage return - the file is split line by line here,
    so that a broken line only ever takes itself to the rejects.
    """
    columns = header if header is not None else read_header(path, delimiter, encoding)
    table, rejects = f"_parsed_{name}", f"_rejects_{name}"
    con.execute(f"DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {rejects}")
    if not columns:
        # An empty file: nothing to load, but the caller still gets (empty) tables.
        con.execute(f"CREATE TEMP TABLE {table} (source_line BIGINT)")
        con.execute(f"CREATE TEMP TABLE {rejects} (line BIGINT, csv_line VARCHAR, error VARCHAR)")
    check_header(path, columns, delimiter, required)
    if not columns:
        return ParsedFile(table, rejects, [])
    first_line = 2 if has_header else 1
    data = path.read_bytes()
    # Lines end with LF or CRLF; a file with CRs only (old Mac) is split on CR.
    lines = data.split(b"\n" if b"\n" in data or b"\r" not in data else b"\r")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a newline
    blank = []
    if b"\n\n" in data or b"\n\r\n" in data or data.startswith((b"\n", b"\r\n")) or b"\r\r" in data:
        blank = [n for n in range(first_line, len(lines) + 1) if lines[n - 1] in (b"", b"\r")]
    # DuckDB's reader takes one line end per file: a stray CR, or CRLF lines mixed with
    # LF ones (a quoted last field before a CR, a CRLF blank line that shifts the line
    # numbers of its rejects), leave it to the line splitter.
    n_crlf = data.count(b"\r\n")
    # (A final CR is the CRLF file's last line end cut short, not a stray, only when the
    # file has CRLF line ends at all.)
    stray_cr = b"\n" in data and data.count(b"\r") > n_crlf + (data.endswith(b"\r") and n_crlf > 0)
    mixed_line_ends = 0 < n_crlf < data.count(b"\n")
    if not (stray_cr or mixed_line_ends) and _try_duckdb(con, path, table, rejects, columns, delimiter, encoding, has_header,
                                    first_line, len(lines), blank):  # fmt: skip
        return ParsedFile(table, rejects, columns)
    _parse_line_by_line(con, lines, table, rejects, columns, delimiter, encoding, first_line)
    return ParsedFile(table, rejects, columns)


def _try_duckdb(con: duckdb.DuckDBPyConnection, path: Path, table: str, rejects: str, *args) -> bool:
    """_parse_with_duckdb, or False when DuckDB's reader refuses the file outright (its
    state machine gives up on some quote patterns): the line splitter then reads it, so
    one odd line only ever takes itself to the rejects."""
    try:
        return _parse_with_duckdb(con, path, table, rejects, *args)
    except duckdb.Error:
        for name in (table, rejects, f"{table}_records", f"_scan_{table}", f"_err_{table}"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
        return False


def _parse_with_duckdb(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    rejects: str,
    columns: list[str],
    delimiter: str,
    encoding: str,
    has_header: bool,
    first_line: int,
    n_lines: int,
    blank: list[int],
) -> bool:
    """DuckDB's reader; False (nothing created) when a record it found spans several lines."""
    col_spec = "{" + ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in columns) + "}"
    records, scan, errors = f"{table}_records", f"_scan_{table}", f"_err_{table}"
    con.execute(f"DROP TABLE IF EXISTS {scan}; DROP TABLE IF EXISTS {errors}")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {records} AS
        SELECT row_number() OVER () AS _record, *
        FROM read_csv({sql_literal(path)}, columns = {col_spec}, header = {str(has_header).lower()},
                      delim = {sql_literal(delimiter)}, quote = '"', escape = '"',
                      auto_detect = false, strict_mode = true, null_padding = false,
                      encoding = {sql_literal(encoding)}, max_line_size = {MAX_LINE_BYTES},
                      store_rejects = true, rejects_scan = '{scan}', rejects_table = '{errors}')
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE {rejects} AS
        SELECT line, ltrim(any_value(csv_line), chr(13) || chr(10)) AS csv_line,
               string_agg(DISTINCT error_type, '; ' ORDER BY error_type) AS error
        FROM {errors} GROUP BY line
        """
    )
    con.execute(f"DROP TABLE IF EXISTS {scan}; DROP TABLE IF EXISTS {errors}")
    expected = n_lines - first_line + 1 - len(blank)
    n_records, n_rejects, bad_reject_lines = con.execute(
        f"""SELECT (SELECT count(*) FROM {records}), (SELECT count(*) FROM {rejects}),
                   (SELECT count(*) FROM {rejects} WHERE line < ? OR line > ? OR list_contains(?::BIGINT[], line))""",
        [first_line, n_lines, blank],
    ).fetchall()[0]
    if n_records + n_rejects != expected or bad_reject_lines:
        con.execute(f"DROP TABLE {records}; DROP TABLE {rejects}")
        return False
    # Every record is one line: the k-th good record is the k-th non-blank line that is not a reject.
    skip_blank = f"AND line NOT IN ({', '.join(map(str, blank))})" if blank else ""
    con.execute(
        f"""
        CREATE TEMP TABLE {table} AS
        WITH good_lines AS (
            SELECT line, row_number() OVER (ORDER BY line) AS _record
            FROM (SELECT unnest(range({first_line}, {n_lines + 1})) AS line) l
            WHERE line NOT IN (SELECT line FROM {rejects}) {skip_blank}
        )
        SELECT g.line AS source_line, r.* EXCLUDE (_record)
        FROM {records} r JOIN good_lines g USING (_record)
        """
    )
    con.execute(f"DROP TABLE {records}")
    return True


def _split_line(text: str, delimiter: str) -> tuple[list[str] | None, str | None]:
    """The fields of one record's text, or the reason it cannot be split."""
    try:
        return next(csv.reader([text], delimiter=delimiter, quotechar='"', doublequote=True, strict=True)), None
    except csv.Error as exc:
        message = str(exc)
        if "unexpected end of data" in message:
            return None, _OPEN_QUOTE  # a quoted field runs past the end of the text
        if "new-line character" in message:
            return None, "STRAY CARRIAGE RETURN"
        return None, "UNQUOTED VALUE"


def _without_trailing_empty(fields: list[str], width: int) -> list[str]:
    """A record's fields without empty ones past the header's width (`...,z,,`), as
    DuckDB's reader drops them: spreadsheet exports pad lines so."""
    return fields[:width] if len(fields) > width and not any(fields[width:]) else fields


def _parse_line_by_line(
    con: duckdb.DuckDBPyConnection,
    lines: list[bytes],
    table: str,
    rejects: str,
    columns: list[str],
    delimiter: str,
    encoding: str,
    first_line: int,
) -> None:
    """Split the file here, one physical line at a time (see parse_delimited)."""
    import pyarrow as pa

    width = len(columns)
    good_lines: list[int] = []
    values: list[list[str | None]] = [[] for _ in columns]
    bad: list[tuple[int, str, str]] = []

    def decode(raw: bytes) -> str | None:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            return None

    def lossy(raw: bytes) -> str:
        return raw.decode(encoding, "replace").replace("\ufffd", "?")  # as DuckDB's reader shows it

    i, n = first_line - 1, len(lines)
    while i < n:
        raw = lines[i][:-1] if lines[i].endswith(b"\r") else lines[i]
        number, i = i + 1, i + 1  # physical line number; i now indexes the next line
        if not raw:
            continue
        if len(raw) > MAX_LINE_BYTES:
            bad.append((number, lossy(raw[:_REJECT_TEXT_CHARS]), "LINE SIZE OVER MAXIMUM"))
            continue
        text = decode(raw)
        if text is None:
            bad.append((number, lossy(raw), "INVALID ENCODING"))
            continue
        if number == 1:
            text = text.lstrip("\ufeff")
        fields, error = _split_line(text, delimiter)
        if error == _OPEN_QUOTE:
            # A quoted field may hold newlines: join the next lines while the quote stays open.
            joined, j = text, i
            while error == _OPEN_QUOTE and j < n and j - i < MAX_RECORD_LINES - 1:
                more = decode(lines[j][:-1] if lines[j].endswith(b"\r") else lines[j])
                if more is None or len(joined) > MAX_LINE_BYTES:
                    break
                joined, j = joined + "\n" + more, j + 1
                fields, error = _split_line(joined, delimiter)
            if error is None and len(_without_trailing_empty(fields, width)) == width:
                i = j  # one record over lines number..j
            else:
                fields, error = None, "UNQUOTED VALUE"
        if error is None:
            fields = _without_trailing_empty(fields, width)
        if error is None and len(fields) != width:
            error = "MISSING COLUMNS" if len(fields) < width else "TOO MANY COLUMNS"
        if error is not None:
            bad.append((number, text, error))
            continue
        good_lines.append(number)
        for k, value in enumerate(fields):
            values[k].append(value if value != "" else None)

    arrays = {"source_line": pa.array(good_lines, pa.int64())}
    arrays.update({f"c{k}": pa.array(v, pa.string()) for k, v in enumerate(values)})
    good = pa.table(arrays)
    rejected = pa.table({
        "line": pa.array([b[0] for b in bad], pa.int64()),
        "csv_line": pa.array([b[1] for b in bad], pa.string()),
        "error": pa.array([b[2] for b in bad], pa.string()),
    })  # fmt: skip
    select = ", ".join(f"c{k} AS {quote_ident(c)}" for k, c in enumerate(columns))
    con.register("_line_by_line_good", good)
    con.register("_line_by_line_bad", rejected)
    try:
        con.execute(f"CREATE TEMP TABLE {table} AS SELECT source_line, {select} FROM _line_by_line_good")
        con.execute(f"CREATE TEMP TABLE {rejects} AS SELECT * FROM _line_by_line_bad")
    finally:
        con.unregister("_line_by_line_good")
        con.unregister("_line_by_line_bad")


# --- Many files at once ---------------------------------------------------------------
# Loading a range of days parses all its files in one DuckDB scan per header (the scan
# runs in parallel and its fixed costs are paid once, not per file). Each file keeps the
# guarantees of parse_delimited: exact physical line numbers, rejects with their text, and
# the per-file fallback (parse_delimited itself) for a file the scan cannot number.


@dataclass(frozen=True)
class FileLines:
    """Where the lines of a file are, as parse_delimited counts them (LF-only files)."""

    n_lines: int
    blank: list[int]  # blank lines after the header (they hold no record)
    has_cr: bool  # CRLF, CR-only or a stray CR: left to parse_delimited


def file_lines(path: Path) -> FileLines:
    """Count lines and find blank ones with numpy over a memory map (no Python loop, no
    copy of the file: this runs once per file of every load)."""
    import mmap

    import numpy as np

    if path.stat().st_size == 0:
        return FileLines(0, [], False)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        has_cr = data.find(b"\r") >= 0
        newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        ends_open = data[-1] != 10
    # Line k (1-based, k >= 2) is blank when the newline ending it follows the one before.
    blank = (np.flatnonzero(np.diff(newlines) == 1) + 2).tolist()
    return FileLines(len(newlines) + int(ends_open), blank, has_cr)


@dataclass(frozen=True)
class ParsedFiles:
    """Delimited files read into temp objects, each row tagged with its file's index."""

    table: str  # view: _file, source_line, then every field of any file's header (NULL where a file lacks it)
    rejects: str  # table: _file, line, csv_line, error - lines that could not be split
    headers: list[list[str]]  # each file's header, in the order of the paths
    temp_tables: tuple[str, ...]  # what the view reads (drop_parsed_files drops them)


def parse_delimited_files(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    *,
    name: str,
    required: tuple[str, ...] = (),
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> ParsedFiles:
    """parse_delimited for many files (with headers): the same rows, line numbers and rejects.

    Files sharing a header are read by one DuckDB scan; a file whose records the scan
    cannot number exactly (a record over several lines, a CR anywhere) is read again
    alone by parse_delimited, which splits it line by line when needed. Header errors
    are raised for the first bad file in the order of ``paths``."""
    if len(set(paths)) != len(paths):
        raise ValueError("parse_delimited_files: a file is listed twice")
    headers = [read_header(p, delimiter, encoding) for p in paths]
    for path, columns in zip(paths, headers):
        check_header(path, columns, delimiter, required)
    # Names of their own: parse_delimited's _parsed_<name> is a table, this one a view.
    view, rejects, alone_table = f"_files_{name}", f"_files_{name}_rejects", f"_files_{name}_alone"
    all_columns = list(dict.fromkeys(c for columns in headers for c in columns))
    fields = "".join(f", {quote_ident(c)} VARCHAR" for c in all_columns)
    con.execute(f"DROP VIEW IF EXISTS {view}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {rejects} (_file INTEGER, line BIGINT, csv_line VARCHAR, error VARCHAR)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {alone_table} (_file INTEGER, source_line BIGINT{fields})")
    groups: dict[tuple[str, ...], dict[int, FileLines]] = {}
    alone = []
    for i, (path, columns) in enumerate(zip(paths, headers)):
        lines = file_lines(path) if columns else None
        if lines is None or lines.has_cr:
            alone.append(i)
        else:
            groups.setdefault(tuple(columns), {})[i] = lines
    parts, temp_tables = [f"SELECT * FROM {alone_table}"], [alone_table]
    for g, (columns, files) in enumerate(groups.items()):
        scan, numbers = f"_files_{name}_scan{g}", f"_files_{name}_lines{g}"
        alone += _scan_files(con, paths, files, list(columns), scan, numbers, rejects, delimiter, encoding)
        # A hash join on the rowid's bucket finds each row's run (a few per bucket): it
        # runs in parallel, which a POSITIONAL JOIN with a row per record does not.
        parts.append(
            f"SELECT g._file, s.rowid + g.line_offset AS source_line, s.* EXCLUDE (_csv_file) "
            f"FROM {scan} s JOIN {numbers} g "
            f"ON g.bucket = s.rowid // {_RUN_BUCKET_ROWS} AND s.rowid BETWEEN g.first_row AND g.last_row "
            f"WHERE g._file >= 0"
        )
        temp_tables += [scan, numbers]
    for i in sorted(alone):
        _insert_parsed_alone(con, i, paths[i], headers[i], alone_table, rejects, delimiter, encoding)
    con.execute(f"CREATE TEMP VIEW {view} AS " + " UNION ALL BY NAME ".join(parts))
    return ParsedFiles(view, rejects, headers, tuple(temp_tables))


def drop_parsed_files(con: duckdb.DuckDBPyConnection, parsed: ParsedFiles) -> None:
    """Free what parse_delimited_files holds (temp tables live in memory)."""
    con.execute(f"DROP VIEW IF EXISTS {parsed.table}; DROP TABLE IF EXISTS {parsed.rejects}")
    for name in parsed.temp_tables:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def _insert_parsed_alone(
    con: duckdb.DuckDBPyConnection, i: int, path: Path, columns: list[str],
    table: str, rejects: str, delimiter: str, encoding: str,
) -> None:  # fmt: skip
    """Add one file read by parse_delimited (the day-by-day reader) to the tables."""
    one = parse_delimited(con, path, name=f"{table}_one", header=columns, delimiter=delimiter, encoding=encoding)
    con.execute(f"INSERT INTO {table} BY NAME SELECT {i} AS _file, * FROM {one.table}")
    con.execute(f"INSERT INTO {rejects} SELECT {i}, line, csv_line, error FROM {one.rejects}")
    con.execute(f"DROP TABLE {one.table}; DROP TABLE {one.rejects}")


def _scan_files(
    con: duckdb.DuckDBPyConnection, paths: list[Path], files: dict[int, FileLines], columns: list[str],
    scan: str, numbers: str, rejects: str, delimiter: str, encoding: str,
) -> list[int]:  # fmt: skip
    """Read files with one header in one DuckDB scan into table ``scan``, and into table
    ``numbers`` the runs of its rows (record_runs) that give each row its file and line.
    Adds the rejects; returns the files it could not number (their rows get _file -1)."""
    import numpy as np

    errors, scans = f"{scan}_errors", f"{scan}_files"
    col_spec = "{" + ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in columns) + "}"
    path_list = "[" + ", ".join(sql_literal(paths[i]) for i in files) + "]"
    con.execute(f"DROP TABLE IF EXISTS {errors}; DROP TABLE IF EXISTS {scans}")
    try:
        # Same dialect as _parse_with_duckdb. The new table keeps the scan's order (files in
        # list order, records in file order: DuckDB preserves insertion order, as the
        # row_number() of _parse_with_duckdb relies on), so a row's rowid is its record.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {scan} AS
            SELECT * FROM read_csv({path_list}, columns = {col_spec}, header = true, filename = '_csv_file',
                          delim = {sql_literal(delimiter)}, quote = '"', escape = '"',
                          auto_detect = false, strict_mode = true, null_padding = false,
                          encoding = {sql_literal(encoding)}, max_line_size = {MAX_LINE_BYTES},
                          store_rejects = true, rejects_scan = '{scans}', rejects_table = '{errors}')
            """
        )
    except duckdb.Error:
        # Something the reader refuses outright: each file goes its own way.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {scan} (_csv_file VARCHAR)")
        _store_runs(con, numbers, record_runs(np.zeros(0, np.int32), np.zeros(0, np.int64)))
        con.execute(f"DROP TABLE IF EXISTS {errors}; DROP TABLE IF EXISTS {scans}")
        return list(files)
    index = {str(paths[i]): i for i in files}
    file_list = ", ".join(f"({sql_literal(p)}, {i})" for p, i in index.items())
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {scan}_rejects AS
        SELECT f._file, e.line, ltrim(any_value(e.csv_line), chr(13) || chr(10)) AS csv_line,
               string_agg(DISTINCT e.error_type, '; ' ORDER BY e.error_type) AS error
        FROM {errors} e JOIN {scans} s USING (scan_id, file_id)
        JOIN (VALUES {file_list}) f(path, _file) ON f.path = s.file_path
        GROUP BY f._file, e.line
        """
    )
    runs = {
        index[path]: (first, n, last)
        for path, first, n, last in con.execute(
            f"SELECT _csv_file, min(rowid), count(*), max(rowid) FROM {scan} GROUP BY _csv_file"
        ).fetchall()
    }
    skipped = con.execute(f"SELECT _file, line FROM {scan}_rejects ORDER BY _file, line").fetchnumpy()
    file_of, line_of, failed = number_records(files, runs, skipped["_file"], skipped["line"])
    _store_runs(con, numbers, record_runs(file_of, line_of))
    failed_list = ", ".join(map(str, failed)) or "-1"  # no file has index -1
    con.execute(f"INSERT INTO {rejects} SELECT * FROM {scan}_rejects WHERE _file NOT IN ({failed_list})")
    for name in (errors, scans, f"{scan}_rejects"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return failed


def _store_runs(con: duckdb.DuckDBPyConnection, table: str, runs) -> None:
    con.register(f"{table}_arrow", runs)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {table}_arrow")
    finally:
        con.unregister(f"{table}_arrow")


# Rows per bucket of rowids in the runs table: small enough that a bucket holds few runs,
# large enough that the table stays small (~2,500 buckets for 10M rows).
_RUN_BUCKET_ROWS = 4096


def record_runs(file_of, line_of):
    """The rows of a scan as runs of consecutive rowids with one file and one line - rowid
    offset, cut at every bucket of _RUN_BUCKET_ROWS rowids so that each run lies in one
    bucket: (bucket, first_row, last_row, _file, line_offset), an Arrow table."""
    import numpy as np
    import pyarrow as pa

    n = len(file_of)
    rowid = np.arange(n, dtype=np.int64)
    offset = line_of - rowid
    cut = np.flatnonzero((np.diff(offset) != 0) | (np.diff(file_of) != 0) | (rowid[1:] % _RUN_BUCKET_ROWS == 0)) + 1
    first = np.concatenate([[0], cut]).astype(np.int64) if n else np.zeros(0, np.int64)
    last = np.concatenate([cut - 1, [n - 1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    return pa.table({
        "bucket": pa.array(first // _RUN_BUCKET_ROWS), "first_row": pa.array(first), "last_row": pa.array(last),
        "_file": pa.array(file_of[first]), "line_offset": pa.array(offset[first]),
    })  # fmt: skip


def number_records(files: dict[int, FileLines], runs: dict[int, tuple[int, int, int]], reject_file, reject_line):
    """Each scanned record's file and physical line, by rowid; and the files that cannot
    be numbered this way (their records get file -1).

    ``runs``: each file's (first rowid, records, last rowid); ``reject_file/line``: the
    rejected lines, sorted. A file is numbered when each of its records is one line:
    records + rejects + blank lines make up every line after the header, no reject sits
    on the header, a blank line or past the end, and its records are one run of rowids.
    Then its k-th record is on the k-th line after the header that is neither blank nor
    rejected: with those skipped lines s_1 < s_2 < ..., line t + j where t = k + 1 (the
    line were nothing skipped) and j the number of skipped lines with s_j - j < t - a
    binary search per record, vectorised."""
    import numpy as np

    n_rows = sum(n for _, n, _ in runs.values())
    file_of = np.full(n_rows, -1, np.int32)
    line_of = np.zeros(n_rows, np.int64)
    if any(last >= n_rows for _, _, last in runs.values()):
        return file_of, line_of, sorted(files)  # rowids not 0..n-1: nothing can be numbered
    bounds = np.searchsorted(reject_file, list(files), side="left"), np.searchsorted(reject_file, list(files), "right")
    failed = []
    for (i, lines), lo, hi in zip(files.items(), *bounds):
        first, n, last = runs.get(i, (0, 0, -1))
        rejected = reject_line[lo:hi]
        blank = np.asarray(lines.blank, np.int64)
        misplaced = (rejected < 2) | (rejected > lines.n_lines) | np.isin(rejected, blank)
        if n + len(rejected) != lines.n_lines - 1 - len(blank) or misplaced.any() or last - first + 1 != n:
            failed.append(i)
            continue
        skipped = np.sort(np.concatenate([rejected, blank]))
        t = np.arange(2, n + 2, dtype=np.int64)
        line_of[first : last + 1] = t + np.searchsorted(skipped - np.arange(1, len(skipped) + 1), t, side="left")
        file_of[first : last + 1] = i
    return file_of, line_of, failed


def rejects_as_events(parsed: ParsedFile, source_file: str) -> str:
    """SELECT turning unparseable lines into raw event rows (all canonical fields NULL)."""
    nulls = ", ".join(f"NULL::VARCHAR AS {c}" for c in RAW_EVENT_COLUMNS)
    return (
        f"SELECT {nulls}, {sql_literal(source_file)} AS source_file, line AS source_line, "
        f"'malformed_line: ' || error AS parse_error, csv_line AS raw_line FROM {parsed.rejects}"
    )


# Longest user id accepted; longer ones are quarantined as oversized_field.
MAX_USER_ID_LENGTH = 256


def with_user_id_checks(select: str) -> str:
    """The events SELECT with rows whose user id cannot be an id flagged in parse_error.

    User ids are pseudonymised when they are loaded, before staging validates anything,
    so a user id with a control character (NUL, tab, a quoted newline...) or of absurd
    length would reach staging as an ordinary pseudonym. They are flagged here instead,
    with a parse_error that staging turns into the reason code (``invalid_id:`` ->
    invalid_id, ``oversized_field:`` -> oversized_field); the other fields are kept.
    """
    return f"""
        SELECT * REPLACE (
            CASE WHEN parse_error IS NOT NULL THEN parse_error
                 WHEN regexp_matches(user_id, '[\\x00-\\x1F\\x7F]')
                     THEN 'invalid_id: user_id holds a control character'
                 WHEN length(user_id) > {MAX_USER_ID_LENGTH}
                     THEN 'oversized_field: user_id is longer than {MAX_USER_ID_LENGTH} characters'
            END AS parse_error)
        FROM ({select}) AS _events
    """


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

    def file_for(self, day: date) -> Path | None:
        """The day's file (the first one when a day has two), without failing."""
        try:
            return self.event_files().get(day)
        except SourceError:
            return None

    def header_warnings(self, days: list[date]) -> list[str]:
        """Loadable oddities of the days' files (e.g. columns without a name), one line each."""
        return []

    # Loading a range of days at once (one scan of all its files) is optional: sources
    # that offer it answer True and implement the three methods below.
    def loads_ranges(self) -> bool:
        return False

    def check_event_days(self, days: list[date]) -> tuple[list[date], dict[date, SourceError]]:
        """The days events_range_sql can read, and the error of every day it cannot."""
        raise NotImplementedError

    def events_range_sql(self, con: duckdb.DuckDBPyConnection, days: list[date]) -> str:
        """events_sql for several days: partition_date, then what events_sql gives."""
        raise NotImplementedError

    def drop_range_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        """Drop the temp tables events_range_sql created."""

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
