"""Short-lived DuckDB connections to the warehouse file.

DuckDB allows one writing process per file, and while a process holds the file
another cannot even open it read-only. The pipeline therefore never keeps a
connection open between steps: each step opens, works and closes. If another run
holds the file right now (the nightly schedule and a manual run), we wait and retry
instead of failing, for up to ``lock_timeout_s`` seconds.

DuckDB's own lock is not enough across processes: dbt (run as a subprocess) opens the
file without waiting. So every pipeline step of every process that opens the
warehouse, and every dbt invocation, first takes an advisory lock on a sidecar file
(``warehouse.duckdb.lock``, ``flock``): two overlapping runs interleave step by step
instead of failing. The lock is re-entrant within a process.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


class WarehouseBusyError(TimeoutError):
    """Another process kept the warehouse for longer than the lock timeout."""


_held: dict[str, tuple[int, int]] = {}  # lock file -> (file descriptor, depth) in this process
_held_guard = threading.RLock()


def lock_path(path: Path | str) -> Path:
    return Path(f"{path}.lock")


@contextmanager
def writer_lock(path: Path | str, lock_timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the warehouse's cross-process advisory lock (re-entrant within a process)."""
    if str(path) == ":memory:":
        yield
        return
    key = str(lock_path(path))
    with _held_guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            acquired_here = False
        else:
            acquired_here = True
    if acquired_here:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + lock_timeout_s
        delay = 0.05
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise WarehouseBusyError(
                        f"{path} stayed locked by another run for {lock_timeout_s:.0f}s ({key})"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        with _held_guard:
            _held[key] = (fd, 1)
    try:
        yield
    finally:
        with _held_guard:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
            else:
                del _held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


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
def connection(
    path: Path | str, *, read_only: bool = False, lock_timeout_s: float = 600.0, shared: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection. Pipeline steps hold the cross-process writer lock while
    it is open; ``shared=True`` (analysts' read-only queries) only waits on DuckDB's lock."""
    with writer_lock(path, lock_timeout_s) if not shared else _no_lock():
        con = connect(path, read_only=read_only, lock_timeout_s=lock_timeout_s)
        try:
            yield con
        finally:
            con.close()


@contextmanager
def analyst_connection(
    path: Path | str,
    lock_timeout_s: float = 30.0,
    *,
    memory_limit: str | None = "2GB",
    threads: int | None = 2,
    spill_limit: str | None = "4GB",
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for queries typed by a person (``recs sql``): read-only, and without
    access to the file system (no reading or writing other files, no ATTACH, no
    extensions), with the settings locked so a query cannot switch that back on.

    ``memory_limit`` and ``threads`` bound what one query may take (DuckDB's
    ``memory_limit``, ``threads``); ``spill_limit`` bounds the temporary files DuckDB
    writes when a sort or join does not fit (``max_temp_directory_size``; by default it
    would fill 90% of the disk). Locked too: ``SET memory_limit`` in the query is refused.
    ``None`` leaves DuckDB's default. The statement timeout is ``run_with_timeout``."""
    config: dict[str, str | bool | int] = {"enable_external_access": False, "autoload_known_extensions": False}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = int(threads)
    if spill_limit:
        config["max_temp_directory_size"] = spill_limit
    con = _retry_on_lock(lambda: duckdb.connect(str(path), read_only=True, config=config), lock_timeout_s)
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


class StatementTimeout(TimeoutError):
    """``run_with_timeout`` stopped a statement that ran longer than its timeout."""

    def __init__(self, timeout_s: float, elapsed_s: float):
        super().__init__(f"the statement was stopped after {elapsed_s:.1f}s (timeout {timeout_s:g}s)")
        self.timeout_s = timeout_s
        self.elapsed_s = elapsed_s


@dataclass
class QueryResult:
    columns: list[str] | None  # None: the statement returned no result set
    rows: list[tuple]  # the first ``max_rows`` rows (all of them without max_rows)
    n_rows: int  # rows the statement returned in all


def run_with_timeout(
    con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float | None, max_rows: int | None = None
) -> QueryResult:
    """Run ``sql`` on ``con`` and fetch its rows, stopping it with ``con.interrupt()`` once
    it has run ``timeout_s`` seconds (``None`` or 0: no limit); raises
    ``StatementTimeout`` then. DuckDB has no statement timeout setting of its own.

    The timeout covers fetching too: DuckDB streams a SELECT's rows, so most of a
    query's work may happen while they are fetched. Only ``max_rows`` rows become
    Python tuples; the others are counted (as Arrow batches) and dropped, so a query
    returning millions of rows does not fill the Python process's memory (which
    DuckDB's ``memory_limit`` does not cover). A watchdog thread interrupts again every
    0.2 s after the deadline, so an interrupt that lands between two fetch calls (when
    nothing runs, and DuckDB ignores it) is not lost."""
    done = threading.Event()
    fired = threading.Event()

    def watchdog() -> None:
        if done.wait(timeout_s):
            return
        fired.set()
        while not done.is_set():
            con.interrupt()
            done.wait(0.2)

    started = time.monotonic()
    guard = threading.Thread(target=watchdog, name="sql-statement-timeout", daemon=True) if timeout_s else None
    if guard is not None:
        guard.start()
    try:
        cur = con.execute(sql)
        if cur.description is None:
            return QueryResult(None, [], 0)
        columns = [d[0] for d in cur.description]
        if max_rows is None:
            rows = cur.fetchall()
            return QueryResult(columns, rows, len(rows))
        rows = cur.fetchmany(max_rows) if max_rows > 0 else []
        rest = 0
        if len(rows) == max_rows:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Arrow output on a DB-API result makes an extra copy"
                rest = sum(batch.num_rows for batch in cur.to_arrow_reader(100_000))
        return QueryResult(columns, rows, len(rows) + rest)
    except duckdb.InterruptException as exc:
        if fired.is_set():
            raise StatementTimeout(float(timeout_s or 0), time.monotonic() - started) from exc
        raise
    finally:
        done.set()
        if guard is not None:
            guard.join()


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


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
