"""The Spark engine: the warehouse is a folder of Parquet tables, computed by Spark.

Storage convention (shared with dbt-spark's target in dbt_project/profiles.yml):
table ``schema.name`` lives at ``<warehouse>/<schema>.db/<name>/`` as Parquet, a table
partitioned by day in hive-style ``partition_date=YYYY-MM-DD/`` folders. Every process
(a Dagster step, dbt, the CLI) uses Spark's in-memory catalog and registers the folders
it finds as external tables when a session starts, so there is no metastore to share
and no single-writer lock: many processes may use the warehouse at once. (On a cluster
a Hive metastore or Unity/Glue catalog takes this role: docs/scale.md.)

Locally the SparkSession runs in this process (``local[*]``); ``master`` points it at a
cluster, ``remote`` at a Spark Connect server. Tables are Parquet, not Delta: Delta's
jars are fetched from Maven at run time, which a machine without internet cannot do.
A table is replaced by writing the new version next to it and swapping the folders, so
a failed write keeps the old table.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from recs_pipeline.engine import folders
from recs_pipeline.engine.base import Engine, Params, Session, TableData, split_name
from recs_pipeline.engine.folders import SCRATCH_PREFIX
from recs_pipeline.engine.snapshot import SnapshotReport


def spark_conf(warehouse: Path, driver_memory: str = "2g", extra: dict[str, str] | None = None) -> dict[str, str]:
    """The Spark settings every process of the pipeline uses (dbt's profile sets the same)."""
    return {
        "spark.sql.warehouse.dir": str(warehouse),
        # No metastore: each process registers the folders (see the module docstring).
        "spark.sql.catalogImplementation": "in-memory",
        # Partitions are discovered from the folders, not kept in the catalog: a day one
        # process overwrote is seen by the next without a repair step.
        "spark.sql.hive.manageFilesourcePartitions": "false",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # A CTAS with an explicit LOCATION (how dbt rebuilds a table) overwrites the folder.
        "spark.sql.legacy.allowNonEmptyLocationInCTAS": "true",
        "spark.sql.sources.default": "parquet",
        # Plain microsecond timestamps (not Spark's legacy INT96) for other Parquet readers.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.session.timeZone": "UTC",
        # dbt-spark runs with ANSI mode off; the engine's SQL must mean the same.
        "spark.sql.ansi.enabled": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.memory": driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Small shops: a few partitions per shuffle, not 200 tiny files per table.
        "spark.sql.shuffle.partitions": "8",
        **(extra or {}),
    }


_SESSION_LOCK = threading.Lock()


def _quiet_python_side() -> None:
    """PySpark's pandas-version notice (the engine converts through Arrow itself) and
    py4j's per-connection INFO lines say nothing a pipeline user can act on."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    logging.getLogger("py4j").setLevel(logging.WARNING)


def spark_session(master: str, conf: dict[str, str], remote: str = ""):
    """This process's SparkSession (Spark allows one per JVM). A session of another
    warehouse (a test's earlier one) is stopped first: the warehouse folder is fixed for
    a session's life."""
    from pyspark.sql import SparkSession

    _quiet_python_side()
    # Python workers (mapInPandas scoring) run this interpreter, with the pipeline's
    # packages, not whatever `python3` is first on the PATH; PySpark reads only the
    # environment. On a cluster the image sets PYSPARK_PYTHON (docs/scale.md).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with _SESSION_LOCK:
        active = SparkSession.getActiveSession() or SparkSession._instantiatedSession
        if active is not None and not remote:
            if active.conf.get("spark.sql.warehouse.dir", "").removeprefix("file:") == conf["spark.sql.warehouse.dir"]:
                return active
            active.stop()
        builder = SparkSession.builder.appName("recs-pipeline")
        builder = builder.remote(remote) if remote else builder.master(master)
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        if not remote:
            spark.sparkContext.setLogLevel("ERROR")
        return spark


def _naive_utc(table: pa.Table) -> pa.Table:
    """Timestamps without a zone, in UTC, as DuckDB's TIMESTAMP gives them (Spark's Arrow
    output marks them UTC)."""
    fields = []
    changed = False
    for field in table.schema:
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            fields.append(pa.field(field.name, pa.timestamp(field.type.unit), field.nullable))
            changed = True
        else:
            fields.append(field)
    return table.cast(pa.schema(fields)) if changed else table


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, pa.timestamp("us", f.type.tz), f.nullable)
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns"
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


class SparkEngineSession(Session):
    """The engine interface on this process's SparkSession."""

    def __init__(self, engine: "SparkEngine", spark):
        self._engine = engine
        self._spark = spark

    # --- reading -------------------------------------------------------------------
    def _sql(self, sql: str, params: Params = None):
        return self._spark.sql(sql, args=list(params)) if params else self._spark.sql(sql)

    def execute(self, sql: str, params: Params = None) -> None:
        self._sql(sql, params)
        self._engine._after_statement(self._spark, sql)

    def arrow(self, sql: str, params: Params = None) -> pa.Table:
        return _naive_utc(self._sql(sql, params).toArrow())

    def df(self, sql: str, params: Params = None) -> pd.DataFrame:
        # DECIMAL as float64, as DuckDB's frames have it (not Python Decimal objects).
        table = self.arrow(sql, params)
        decimals = {f.name: pa.float64() for f in table.schema if pa.types.is_decimal(f.type)}
        if decimals:
            table = table.cast(pa.schema([pa.field(f.name, decimals.get(f.name, f.type), f.nullable) for f in table.schema]))
        return table.to_pandas()

    def rows(self, sql: str, params: Params = None) -> list[tuple]:
        table = self.arrow(sql, params)
        return list(zip(*(column.to_pylist() for column in table.columns))) if table.num_columns else []

    def table_exists(self, name: str) -> bool:
        schema, table = split_name(name)
        return self._spark.catalog.tableExists(f"{schema}.{table}")

    def columns(self, name: str) -> list[tuple[str, str]]:
        schema, table = split_name(name)
        return [(c.name, c.dataType) for c in self._spark.catalog.listColumns(f"{schema}.{table}")]

    def tables(self, schemas: Sequence[str] | None = None, include_views: bool = False) -> list[str]:
        wanted = None if schemas is None else set(schemas)
        found = []
        for database in self._spark.catalog.listDatabases():
            if wanted is not None and database.name not in wanted:
                continue
            for table in self._spark.catalog.listTables(database.name):
                if table.isTemporary or (table.tableType == "VIEW" and not include_views):
                    continue
                found.append(f"{database.name}.{table.name}")
        return sorted(found)

    def hours_between(self, start: str, end: str) -> str:
        return f"CAST((unix_seconds(date_trunc('HOUR', {end})) - unix_seconds(date_trunc('HOUR', {start}))) / 3600 AS BIGINT)"

    def delete_rows(self, name: str, where: str, params: Params = None) -> int:
        # Parquet files cannot delete rows: the table is written again without them
        # (partitioned as it was), then swapped in.
        schema, table = split_name(name)
        doomed = self._sql(f"SELECT count(*) FROM {schema}.{table} WHERE {where}", params).collect()[0][0]
        if doomed:
            kept = self._sql(f"SELECT * FROM {schema}.{table} WHERE NOT coalesce(({where}), false)", params)
            partition = self._engine._partition_columns(self._engine.table_path(schema, table))
            self._engine._write_table(self._spark, schema, table, kept, partition_by=partition[0] if partition else None)
        return int(doomed)

    def sample(self, name: str, rows: int, where: str = "", seed: int = 42) -> pd.DataFrame:
        # A hash of each row's content with the seed: the same rows whatever the files'
        # order or the number of partitions (rand(seed) depends on both).
        filter_sql = f"WHERE {where}" if where else ""
        cols = ", ".join(f"`{c}`" for c, _ in self.columns(name))
        return self.df(f"SELECT * FROM {name} {filter_sql} ORDER BY xxhash64({cols}, {int(seed)}) LIMIT {int(rows)}")

    # --- writing -------------------------------------------------------------------
    def _frame(self, data: TableData, params: Params = None):
        """A Spark DataFrame of ``data``."""
        if isinstance(data, str):
            return self._sql(data, params)
        if isinstance(data, pd.DataFrame):
            data = _to_arrow(data)
        if not isinstance(data, pa.Table):
            raise TypeError(f"table data must be a SELECT, a pandas frame or an Arrow table, not {type(data).__name__}")
        if data.num_rows == 0:
            # Spark cannot infer anything from an empty Arrow table's batches: give it the schema.
            from pyspark.sql.pandas.types import from_arrow_schema

            return self._spark.createDataFrame([], schema=from_arrow_schema(data.schema))
        return self._spark.createDataFrame(data)

    def replace_table(self, name: str, data: TableData, params: Params = None) -> int:
        schema, table = split_name(name)
        frame = self._frame(data, params)
        return self._engine._write_table(self._spark, schema, table, frame)

    def replace_partitions(
        self, name: str, data: TableData, column: str, values: Sequence[Any], params: Params = None
    ) -> int:
        schema, table = split_name(name)
        values = list(values)
        among = f"coalesce(`{column}` IN ({', '.join('?' * len(values))}), false)" if values else "false"
        frame = self._frame(data, params)
        view = f"_recs_partition_{uuid.uuid4().hex}"
        staged = frame.cache()
        staged.createOrReplaceTempView(view)
        try:
            stray = self._spark.sql(f"SELECT count(*) FROM {view} WHERE NOT {among}", args=values).collect()[0][0]
            if stray:
                shown = repr(values[0]) if len(values) == 1 else repr(values)
                raise ValueError(f"{stray} row(s) for {name} have {column} other than {shown}")
            path = self._engine.table_path(schema, table)
            if not self.table_exists(f"{schema}.{table}"):
                self._engine._write_table(self._spark, schema, table, staged, partition_by=column)
            else:
                existing = [c for c, _ in self.columns(f"{schema}.{table}")]
                partitioned = column in self._engine._partition_columns(path)
                present = {r[0] for r in self._spark.sql(f"SELECT DISTINCT `{column}` FROM {view}").collect()}
                if not partitioned or len(present) < len(values):
                    # A table written whole (not by day), or a day to empty (dynamic overwrite
                    # only rewrites days that have rows): rebuild it with the days swapped.
                    others = self._spark.table(f"{schema}.{table}").where(f"NOT {_among_literals(column, values)}")
                    self._engine._write_table(
                        self._spark, schema, table, others.unionByName(staged.select(*existing)),
                        partition_by=column if partitioned else None,
                    )
                else:
                    # Only these days' folders are rewritten (dynamic partition overwrite).
                    cols = ", ".join(f"`{c}`" for c in existing)
                    self._spark.sql(f"INSERT OVERWRITE TABLE {schema}.{table} PARTITION ({column}) SELECT {cols} FROM {view}")
                    self._spark.catalog.refreshTable(f"{schema}.{table}")
        finally:
            self._spark.catalog.dropTempView(view)
            staged.unpersist()
        return self._spark.sql(f"SELECT count(*) FROM {schema}.{table} WHERE {among}", args=values).collect()[0][0]

    def regex_matches(self, text: str, pattern: str) -> str:
        # RLIKE finds a match anywhere (Java's Matcher.find), as DuckDB's regexp_matches.
        return f"coalesce({text} RLIKE {pattern}, false)"

    def add_text_columns(self, name: str, columns: Sequence[str]) -> None:
        # Written again with the columns (partitioned as it was) and swapped in, as
        # append_rows: the Parquet files carry the schema, so the catalogue alone cannot.
        from pyspark.sql import functions as F

        schema, table = split_name(name)
        existing = self._spark.table(f"{schema}.{table}")
        missing = [c for c in columns if c not in existing.columns]
        if not missing:
            return
        widened = existing.select("*", *[F.lit(None).cast("string").alias(c) for c in missing])
        partition = self._engine._partition_columns(self._engine.table_path(schema, table))
        self._engine._write_table(self._spark, schema, table, widened, partition_by=partition[0] if partition else None)

    def append_rows(self, name: str, data: TableData, params: Params = None) -> int:
        # As delete_rows: the table is written again with the new rows (partitioned as it
        # was) and swapped in, never appended to in place (a failed write keeps the old).
        from pyspark.sql import functions as F

        schema, table = split_name(name)
        frame = self._frame(data, params)
        added = frame.count()
        if not self.table_exists(f"{schema}.{table}"):
            self._engine._write_table(self._spark, schema, table, frame)
            return int(added)
        existing = self._spark.table(f"{schema}.{table}")
        extra = [c for c in frame.columns if c not in existing.columns]
        if extra:
            raise ValueError(f"{name} has no column(s) {', '.join(extra)}")
        # By name, in the table's types; a column missing from the data is NULL (as DuckDB's INSERT BY NAME).
        new = frame.select(
            *[
                (F.col(f"`{f.name}`") if f.name in frame.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                for f in existing.schema.fields
            ]
        )
        partition = self._engine._partition_columns(self._engine.table_path(schema, table))
        self._engine._write_table(
            self._spark, schema, table, existing.unionByName(new), partition_by=partition[0] if partition else None
        )
        return int(added)


def _among_literals(column: str, values: list) -> str:
    """SQL: ``column`` is one of ``values`` (false, never NULL, for a NULL)."""
    if not values:
        return "false"
    return f"coalesce(`{column}` IN ({', '.join(_literal(v) for v in values)}), false)"


def _literal(value: Any) -> str:
    from datetime import date, datetime

    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


class SparkEngine(Engine):
    """The warehouse as Parquet tables under ``warehouse`` (a folder), run by Spark."""

    kind = "spark"

    def __init__(
        self,
        warehouse: str | Path,
        master: str = "local[*]",
        driver_memory: str = "2g",
        remote: str = "",
        conf: dict[str, str] | None = None,
    ):
        self.warehouse = Path(warehouse).resolve()
        self.master = master
        self.driver_memory = driver_memory
        self.remote = remote
        self.conf = spark_conf(self.warehouse, driver_memory, conf)
        # Folder signatures of the tables this process registered: a table another
        # process rewrote since is refreshed (Spark caches file listings).
        self._seen: dict[str, float] = {}

    # --- storage ---------------------------------------------------------------------
    def table_path(self, schema: str, table: str) -> Path:
        return folders.table_path(self.warehouse, schema, table)

    def table_folders(self) -> dict[str, Path]:
        """``schema.table`` -> folder of every table on disk."""
        return folders.table_folders(self.warehouse)

    _partition_columns = staticmethod(folders.partition_columns)

    @staticmethod
    def _signature(path: Path) -> float:
        stamps = [path.stat().st_mtime_ns]
        stamps += [c.stat().st_mtime_ns for c in path.iterdir() if c.is_dir()]
        return float(max(stamps))

    def sync_catalog(self, spark) -> None:
        """Register every table folder (new ones), refresh those rewritten elsewhere and
        forget those removed."""
        folders = self.table_folders()
        for name, path in folders.items():
            schema, table = name.split(".", 1)
            signature = self._signature(path)
            if name not in self._seen or not spark.catalog.tableExists(name):
                spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                spark.sql(f"DROP TABLE IF EXISTS {name}")
                spark.sql(f"CREATE TABLE {name} USING parquet LOCATION '{path}'")
            elif self._seen[name] != signature:
                spark.catalog.refreshTable(name)
            self._seen[name] = signature
        for name in [n for n in self._seen if n not in folders]:
            spark.sql(f"DROP TABLE IF EXISTS {name}")
            del self._seen[name]

    def _after_statement(self, spark, sql: str) -> None:
        """After SQL through ``execute``: a table it created is made an external table
        of its own folder, with a Parquet file holding its schema even when it is empty
        (so another process can register it), and folders it rewrote are noted."""
        head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if head not in {"CREATE", "DROP", "INSERT", "ALTER", "TRUNCATE"}:
            return
        for database in spark.catalog.listDatabases():
            for table in spark.catalog.listTables(database.name):
                if table.tableType == "MANAGED":
                    self._externalize(spark, database.name, table.name)
        for name, path in self.table_folders().items():
            self._seen[name] = self._signature(path)

    def _externalize(self, spark, schema: str, table: str) -> None:
        name = f"{schema}.{table}"
        path = self.table_path(schema, table)
        frame = spark.table(name)
        parked = path.parent / f"{SCRATCH_PREFIX}{table}.parked.{uuid.uuid4().hex}"
        if path.exists() and folders.has_data(path):
            os.replace(path, parked)  # out of the way: dropping a managed table deletes its folder
        else:
            shutil.rmtree(path, ignore_errors=True)
            spark.createDataFrame([], frame.schema).write.mode("overwrite").parquet(str(parked))
        spark.sql(f"DROP TABLE IF EXISTS {name}")
        os.replace(parked, path)
        spark.sql(f"CREATE TABLE {name} USING parquet LOCATION '{path}'")

    def _write_table(self, spark, schema: str, table: str, frame, partition_by: str | None = None) -> int:
        """Write ``frame`` next to the table, then swap the folders: readers of the
        folder see the old files or the new ones, and a failed write keeps the old."""
        path = self.table_path(schema, table)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.parent / f"{SCRATCH_PREFIX}{table}.{uuid.uuid4().hex}"
        writer = frame.write.mode("overwrite").format("parquet")
        if partition_by:
            writer = writer.partitionBy(partition_by)
        writer.save(str(scratch))
        retired = path.parent / f"{SCRATCH_PREFIX}{table}.old.{uuid.uuid4().hex}"
        if path.exists():
            os.replace(path, retired)
        os.replace(scratch, path)
        shutil.rmtree(retired, ignore_errors=True)
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        spark.sql(f"DROP TABLE IF EXISTS {schema}.{table}")
        spark.sql(f"CREATE TABLE {schema}.{table} USING parquet LOCATION '{path}'")
        self._seen[f"{schema}.{table}"] = self._signature(path)
        return spark.table(f"{schema}.{table}").count()

    # --- sessions --------------------------------------------------------------------
    def spark(self):
        """This process's SparkSession, with the warehouse's tables registered."""
        spark = spark_session(self.master, self.conf, self.remote)
        self.sync_catalog(spark)
        return spark

    @contextmanager
    def session(self, read_only: bool = False) -> Iterator[SparkEngineSession]:
        # Spark has no single-writer rule: ``read_only`` changes nothing here.
        yield SparkEngineSession(self, self.spark())

    def map_batches(
        self,
        frame: pd.DataFrame,
        fn,
        schema: pa.Schema,
        shared=None,
        batch_rows: int = 4096,
    ) -> pd.DataFrame:
        """``fn`` on the executors: ``mapInPandas`` over partitions of ``frame``'s rows
        (about ``batch_rows`` each), with ``shared`` broadcast once per executor (a
        Spark Connect session has no broadcast variables: it ships ``shared`` with the
        function instead). The results come back to the driver through Arrow."""
        from pyspark.sql.pandas.types import from_arrow_schema

        spark = spark_session(self.master, self.conf, self.remote)
        if frame.empty:
            return schema.empty_table().to_pandas()
        shared = dict(shared or {})
        if self.remote:
            def values():
                return shared
        else:
            handle = spark.sparkContext.broadcast(shared)

            def values():
                return handle.value

        def run(batches):
            for batch in batches:
                yield fn(batch, values())

        n_partitions = max(1, -(-len(frame) // batch_rows))
        rows = spark.createDataFrame(_to_arrow(frame)).repartition(n_partitions)
        # Arrow batches inside a partition stay at most batch_rows long (memory per task);
        # the session's own setting is restored after, for every other conversion.
        batch_key = "spark.sql.execution.arrow.maxRecordsPerBatch"
        previous = spark.conf.get(batch_key, None)
        spark.conf.set(batch_key, str(batch_rows))
        try:
            result = rows.mapInPandas(run, schema=from_arrow_schema(schema)).toArrow()
        finally:
            if previous is None:
                spark.conf.unset(batch_key)
            else:
                spark.conf.set(batch_key, previous)
            if not self.remote:
                handle.unpersist()
        return _naive_utc(result).cast(schema).to_pandas()

    def publish_snapshot(self, target: Path, full: bool = False) -> SnapshotReport:
        """A DuckDB file with every table, read straight from the Parquet folders (no
        round trip through the JVM); only changed tables and days are copied (see
        :mod:`recs_pipeline.engine.snapshot`), and the file is swapped in atomically."""
        import duckdb

        from recs_pipeline.engine import snapshot
        from recs_pipeline.sources.base import sql_literal

        sources = {}
        for name, path in self.table_folders().items():
            partitioned = bool(self._partition_columns(path))
            sources[name] = (f"read_parquet({sql_literal(str(path / '**' / '*.parquet'))}, "
                             f"hive_partitioning = {str(partitioned).lower()})")  # fmt: skip
        con = duckdb.connect()
        try:
            return snapshot.publish(con, sources, Path(target), full=full)
        finally:
            con.close()


__all__ = ["SparkEngine", "spark_conf", "spark_session"]
