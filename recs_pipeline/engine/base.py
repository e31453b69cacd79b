"""The engine interface: everything asset code does with warehouse tables.

Asset code never talks to a database library. It asks the engine resource for a
short-lived :class:`Session` (``with warehouse.session() as db``) and uses the methods
below. SQL passed in is portable SQL (no engine-specific syntax, ``?`` placeholders for
``params``); results come back as pandas frames, Arrow tables or Python values, never
as an engine's own objects. Data written comes in as a SELECT, a pandas frame or an
Arrow table: a frame's column types are its Arrow types (so cast in Python, e.g.
``frame.astype({"rank": "int32"})``), timestamps at microsecond precision.

Table names are trusted identifiers (``schema.name`` from code, never from data).

Two engines implement the two classes: DuckDB (:mod:`recs_pipeline.engine.duckdb`, the
default) and Spark (:mod:`recs_pipeline.engine.spark`, Parquet tables).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from recs_pipeline.engine.snapshot import SnapshotReport

Params = Sequence[Any] | None
# A function mapped over row batches: (batch, shared values) -> result rows.
BatchFunction = Callable[[pd.DataFrame, Mapping[str, Any]], pd.DataFrame]
# What a table is built from: a SELECT (portable SQL), a pandas frame or an Arrow table.
TableData = Union[str, pd.DataFrame, pa.Table]


class Session(ABC):
    """A short-lived handle on the warehouse: one per step, closed at its end."""

    @abstractmethod
    def execute(self, sql: str, params: Params = None) -> None:
        """Run a statement, discarding any result."""

    @abstractmethod
    def df(self, sql: str, params: Params = None) -> pd.DataFrame:
        """A query's rows as a pandas frame."""

    @abstractmethod
    def arrow(self, sql: str, params: Params = None) -> pa.Table:
        """A query's rows as an Arrow table."""

    @abstractmethod
    def rows(self, sql: str, params: Params = None) -> list[tuple]:
        """A query's rows as tuples (for small results: counts, bounds, a preview)."""

    def row(self, sql: str, params: Params = None) -> tuple | None:
        """The first row of a query (None when it has none)."""
        found = self.rows(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: Params = None) -> Any:
        """The first column of the first row (None when there is no row)."""
        first = self.row(sql, params)
        return None if first is None else first[0]

    @abstractmethod
    def table_exists(self, name: str) -> bool:
        """Whether table ``schema.name`` (or ``name`` in the default schema) exists."""

    @abstractmethod
    def columns(self, name: str) -> list[tuple[str, str]]:
        """(column, type) of a table or view, in order; types in the engine's spelling."""

    @abstractmethod
    def tables(self, schemas: Sequence[str] | None = None, include_views: bool = False) -> list[str]:
        """``schema.name`` of every table (of ``schemas`` only when given), sorted."""

    @abstractmethod
    def replace_table(self, name: str, data: TableData, params: Params = None) -> int:
        """Rebuild ``name`` from ``data`` atomically: readers see the old table or the new
        one, never half; a failure keeps the old table. Creates the schema when missing.
        Returns the new table's row count."""

    @abstractmethod
    def replace_partitions(
        self, name: str, data: TableData, column: str, values: Sequence[Any], params: Params = None
    ) -> int:
        """Replace the rows of ``name`` whose ``column`` is one of ``values`` (days) with
        ``data``, in one step: the other days are untouched, a day of ``values`` without
        rows in ``data`` ends up empty, and running it again with the same data gives the
        same table (no duplicates). Columns are matched by name. Every row of ``data``
        must have ``column`` in ``values`` (else ``ValueError`` and nothing changes).
        Creates the table from ``data`` when missing. Returns the days' row count."""

    def replace_partition(self, name: str, data: TableData, column: str, value: Any, params: Params = None) -> int:
        """:meth:`replace_partitions` of one day."""
        return self.replace_partitions(name, data, column, [value], params)

    # --- SQL that differs by engine: fragments asset code puts into its queries -------
    @abstractmethod
    def hours_between(self, start: str, end: str) -> str:
        """SQL for the number of hour boundaries from timestamp ``start`` to ``end``, as
        the dbt project's ``datediff(..., 'hour')`` counts them (10:59 -> 11:01 is 1)."""

    @abstractmethod
    def regex_matches(self, text: str, pattern: str) -> str:
        """SQL condition: text ``text`` contains a match of the regex ``pattern`` (SQL, e.g.
        ``?``); false, never NULL, when the text is NULL. Patterns must mean the same to
        RE2 (DuckDB) and Java (Spark), as ``privacy.lines.id_pattern``'s do (erasure)."""

    @abstractmethod
    def add_text_columns(self, name: str, columns: Sequence[str]) -> None:
        """Add text columns to table ``name`` (its rows get NULL), keeping its rows and
        partitioning: a table made by an older version gains the columns a newer one
        writes. Columns the table already has are left alone."""

    @abstractmethod
    def append_rows(self, name: str, data: TableData, params: Params = None) -> int:
        """Add the rows of ``data`` to ``name`` (columns matched by name; a column the table
        lacks is an error), as one atomic change of that table: the table keeps its
        constraints and partitioning. Creates the table from ``data`` when missing.
        Returns how many rows were added."""

    @abstractmethod
    def delete_rows(self, name: str, where: str, params: Params = None) -> int:
        """Delete the rows of ``name`` for which ``where`` (a SQL condition) is true, as one
        atomic change of that table (retention, erasure). Returns how many went."""

    @abstractmethod
    def sample(self, name: str, rows: int, where: str = "", seed: int = 42) -> pd.DataFrame:
        """Up to ``rows`` rows of ``name`` (filtered by ``where``, a SQL condition) drawn at
        random with ``seed``: the same table and seed give the same sample."""


class Engine(ABC):
    """Where the warehouse's tables live and how they are computed."""

    kind: str

    @abstractmethod
    def session(self, read_only: bool = False) -> AbstractContextManager[Session]:
        """A short-lived session; ``read_only`` when the step writes nothing."""

    @abstractmethod
    def publish_snapshot(self, target: Path, full: bool = False) -> SnapshotReport:
        """Write a read-only copy of every table to ``target`` (a DuckDB file that SQL
        users query), replacing the previous copy atomically; only what changed since
        the previous copy is copied unless ``full`` (:mod:`recs_pipeline.engine.snapshot`)."""

    def map_batches(
        self,
        frame: pd.DataFrame,
        fn: BatchFunction,
        schema: pa.Schema,
        shared: Mapping[str, Any] | None = None,
        batch_rows: int = 4096,
    ) -> pd.DataFrame:
        """``fn(batch, shared)`` over batches of ``frame``'s rows, the results concatenated
        (columns and types of ``schema``; order of rows not guaranteed across batches).

        Here, in this process, batch after batch. The Spark engine runs it on the
        executors instead (``mapInPandas`` over partitions of the rows, ``shared``
        broadcast once to every executor), which is how scoring leaves the driver: the
        rows carry what differs per batch (the users' factors), ``shared`` what every
        batch needs (the items' factors)."""
        shared = dict(shared or {})
        parts = [fn(frame.iloc[start : start + batch_rows], shared) for start in range(0, len(frame), batch_rows)]
        if not parts:
            return schema.empty_table().to_pandas()
        out = pd.concat(parts, ignore_index=True)
        return pa.Table.from_pandas(out, schema=schema, preserve_index=False).to_pandas()

    # One-call conveniences, each in a session of its own.
    def df(self, sql: str, params: Params = None) -> pd.DataFrame:
        with self.session(read_only=True) as db:
            return db.df(sql, params)

    def arrow(self, sql: str, params: Params = None) -> pa.Table:
        with self.session(read_only=True) as db:
            return db.arrow(sql, params)

    def scalar(self, sql: str, params: Params = None) -> Any:
        with self.session(read_only=True) as db:
            return db.scalar(sql, params)

    def execute(self, sql: str, params: Params = None) -> None:
        with self.session() as db:
            db.execute(sql, params)

    def tables(self, schemas: Sequence[str] | None = None, include_views: bool = False) -> list[str]:
        with self.session(read_only=True) as db:
            return db.tables(schemas, include_views)


def split_name(name: str, default_schema: str = "main") -> tuple[str, str]:
    """``("schema", "table")`` of a trusted ``schema.table`` (or ``table``) name."""
    schema, _, table = name.rpartition(".")
    return (schema or default_schema), table


__all__ = ["Engine", "Params", "Session", "TableData", "split_name"]
