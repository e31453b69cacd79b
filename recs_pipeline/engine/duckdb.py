"""The DuckDB engine (the default): the warehouse is one DuckDB file.

Connections, the single-writer lock and its cross-process advisory lock stay in
:mod:`recs_pipeline.warehouse`; this module puts them behind the engine interface. A
session is one short-lived connection (DuckDB allows one writing process per file), so
the lock is held for one step at a time, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from recs_pipeline import warehouse
from recs_pipeline.engine import snapshot
from recs_pipeline.engine.base import Engine, Params, Session, TableData, split_name
from recs_pipeline.engine.snapshot import SnapshotReport
from recs_pipeline.sources.base import sql_literal


def _microsecond_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with nanosecond timestamps as microseconds (what DuckDB's TIMESTAMP and
    Spark's hold); the frame itself when it has none."""

    def unit(dtype) -> str | None:
        if getattr(dtype, "kind", "") != "M":
            return None
        return getattr(dtype, "unit", None) or np.datetime_data(dtype)[0]

    ns = [c for c, dtype in frame.dtypes.items() if unit(dtype) == "ns"]
    if not ns:
        return frame
    return frame.assign(**{c: frame[c].dt.as_unit("us") for c in ns})


class DuckDBSession(Session):
    """The engine interface on one open DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    # --- reading -------------------------------------------------------------------
    def execute(self, sql: str, params: Params = None) -> None:
        self._con.execute(sql, list(params or []))

    def df(self, sql: str, params: Params = None) -> pd.DataFrame:
        return self._con.execute(sql, list(params or [])).df()

    def arrow(self, sql: str, params: Params = None) -> pa.Table:
        # A relation, not a DB-API result: no extra copy of the rows.
        return self._con.sql(sql, params=list(params or [])).to_arrow_table()

    def rows(self, sql: str, params: Params = None) -> list[tuple]:
        return self._con.execute(sql, list(params or [])).fetchall()

    def table_exists(self, name: str) -> bool:
        schema, table = split_name(name)
        return warehouse.table_exists(self._con, f"{schema}.{table}")

    def columns(self, name: str) -> list[tuple[str, str]]:
        return [(row[0], str(row[1])) for row in self._con.execute(f"DESCRIBE {name}").fetchall()]

    def tables(self, schemas: Sequence[str] | None = None, include_views: bool = False) -> list[str]:
        kinds = ["BASE TABLE", "VIEW"] if include_views else ["BASE TABLE"]
        sql = (
            "SELECT table_schema, table_name FROM information_schema.tables "
            f"WHERE table_catalog = current_database() AND table_type IN ({', '.join('?' for _ in kinds)})"
        )
        params: list[Any] = list(kinds)
        if schemas is not None:
            if not schemas:
                return []
            sql += f" AND table_schema IN ({', '.join('?' for _ in schemas)})"
            params += list(schemas)
        return [f"{s}.{t}" for s, t in self._con.execute(sql + " ORDER BY 1, 2", params).fetchall()]

    def hours_between(self, start: str, end: str) -> str:
        return f"date_diff('hour', {start}, {end})"

    def add_text_columns(self, name: str, columns: Sequence[str]) -> None:
        for column in columns:
            self._con.execute(f'ALTER TABLE {name} ADD COLUMN IF NOT EXISTS "{column}" VARCHAR')

    def delete_rows(self, name: str, where: str, params: Params = None) -> int:
        return int(self._con.execute(f"DELETE FROM {name} WHERE {where}", list(params or [])).fetchall()[0][0])

    def sample(self, name: str, rows: int, where: str = "", seed: int = 42) -> pd.DataFrame:
        filter_sql = f"WHERE {where}" if where else ""
        return self._con.execute(
            f"SELECT * FROM {name} {filter_sql} USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE ({int(seed)})"
        ).df()

    # --- writing -------------------------------------------------------------------
    @contextmanager
    def _select(self, data: TableData) -> Iterator[str]:
        """A SELECT giving ``data``: the SQL itself, or a scan of the frame registered
        under a name of its own for as long as the block runs."""
        if isinstance(data, str):
            yield data
            return
        if isinstance(data, pd.DataFrame):
            data = _microsecond_timestamps(data)
        elif not isinstance(data, pa.Table):
            raise TypeError(f"table data must be a SELECT, a pandas frame or an Arrow table, not {type(data).__name__}")
        view = f"_recs_frame_{uuid.uuid4().hex}"
        self._con.register(view, data)
        try:
            yield f"SELECT * FROM {view}"
        finally:
            self._con.unregister(view)

    def replace_table(self, name: str, data: TableData, params: Params = None) -> int:
        with self._select(data) as select_sql:
            return warehouse.replace_table(self._con, name, select_sql, list(params or []))

    def replace_partitions(
        self, name: str, data: TableData, column: str, values: Sequence[Any], params: Params = None
    ) -> int:
        con = self._con
        schema, _ = split_name(name)
        stage = f"_recs_partition_{uuid.uuid4().hex}"
        values = list(values)
        among = f"coalesce({column} IN ({', '.join('?' * len(values))}), false)" if values else "false"
        with self._select(data) as select_sql:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"CREATE TEMP TABLE {stage} AS {select_sql}", list(params or []))
                stray = con.execute(f"SELECT count(*) FROM {stage} WHERE NOT {among}", values).fetchall()[0][0]
                if stray:
                    raise ValueError(f"{stray} row(s) for {name} have {column} other than {_shown(values)}")
                if warehouse.table_exists(con, name if "." in name else f"main.{name}"):
                    con.execute(f"DELETE FROM {name} WHERE {among}", values)
                    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {stage}")
                else:
                    con.execute(f"CREATE TABLE {name} AS SELECT * FROM {stage}")
                con.execute(f"DROP TABLE {stage}")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return con.execute(f"SELECT count(*) FROM {name} WHERE {among}", values).fetchall()[0][0]

    def regex_matches(self, text: str, pattern: str) -> str:
        return f"coalesce(regexp_matches({text}, {pattern}), false)"

    def append_rows(self, name: str, data: TableData, params: Params = None) -> int:
        # An INSERT (one statement, atomic), not a rebuild: the table keeps its DDL.
        schema, _ = split_name(name)
        with self._select(data) as select_sql:
            if warehouse.table_exists(self._con, name if "." in name else f"main.{name}"):
                sql = f"INSERT INTO {name} BY NAME {select_sql}"
            else:
                self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                sql = f"CREATE TABLE {name} AS {select_sql}"
            return int(self._con.execute(sql, list(params or [])).fetchall()[0][0])


class DuckDBEngine(Engine):
    """The warehouse as a DuckDB file at ``path``; every session waits up to
    ``lock_timeout_s`` seconds for another run to release it."""

    kind = "duckdb"

    def __init__(self, path: str | Path, lock_timeout_s: float = 600.0):
        self.path = str(path)
        self.lock_timeout_s = lock_timeout_s

    @contextmanager
    def session(self, read_only: bool = False) -> Iterator[DuckDBSession]:
        with warehouse.connection(self.path, read_only=read_only, lock_timeout_s=self.lock_timeout_s) as con:
            yield DuckDBSession(con)

    def publish_snapshot(self, target: Path, full: bool = False) -> SnapshotReport:
        """Bring the snapshot up to date (only changed tables and days are copied, see
        :mod:`recs_pipeline.engine.snapshot`), then swap it in atomically."""
        with warehouse.connection(":memory:") as con:
            warehouse.attach_with_retry(
                con, f"ATTACH {sql_literal(self.path)} AS warehouse (READ_ONLY)", self.lock_timeout_s
            )
            names = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'warehouse' ORDER BY ALL"
            ).fetchall()
            sources = {f"{schema}.{table}": f"warehouse.{snapshot.qualified(f'{schema}.{table}')}" for schema, table in names}
            report = snapshot.publish(con, sources, Path(target), catalog="warehouse", full=full)
            con.execute("DETACH warehouse")
        return report


def _shown(values: list) -> str:
    """``values`` for an error message: one as itself, several as a list."""
    return repr(values[0]) if len(values) == 1 else repr(values)
