"""Short-lived DuckDB connections to the warehouse file.

DuckDB allows one writing process per file, and while a process holds the file
another cannot even open it read-only. The pipeline therefore never keeps a
connection open between steps: each step opens, works and closes. If another run
holds the file right now (the nightly schedule and a manual run), we wait and retry
instead of failing, for up to ``lock_timeout_s`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock", "database is locked")


def is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException | duckdb.ConnectionException) and any(
        m in str(exc) for m in _LOCK_MESSAGES
    )


def _retry_on_lock(action, lock_timeout_s: float):
    """Run ``action()``, retrying with back-off while the file is locked by another process."""
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            return action()
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not is_lock_error(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def connect(path: Path | str, *, read_only: bool = False, lock_timeout_s: float = 600.0) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting while another process holds its lock."""
    if str(path) != ":memory:" and not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = _retry_on_lock(lambda: duckdb.connect(str(path), read_only=read_only), lock_timeout_s)
    con.execute("SET TimeZone = 'UTC'")
    return con


def attach_with_retry(con: duckdb.DuckDBPyConnection, attach_sql: str, lock_timeout_s: float = 600.0) -> None:
    """ATTACH another database file, waiting while another process holds its lock."""
    _retry_on_lock(lambda: con.execute(attach_sql), lock_timeout_s)


@contextmanager
def connection(path: Path | str, *, read_only: bool = False, lock_timeout_s: float = 600.0) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, read_only=read_only, lock_timeout_s=lock_timeout_s)
    try:
        yield con
    finally:
        con.close()


def replace_table(con: duckdb.DuckDBPyConnection, table: str, select_sql: str, params: list | None = None) -> int:
    """Rebuild ``table`` from a SELECT atomically: readers see the old or the new table, never half.

    ``table`` is a trusted identifier (schema.name from code, never from data).
    """
    schema = table.split(".")[0] if "." in table else "main"
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {select_sql}", params or [])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".") if "." in table else ("main", table)
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchall()[0][0]
    )
