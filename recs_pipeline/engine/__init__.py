"""One engine interface for everything asset code does with tables (recs_pipeline.engine.base),
with DuckDB (the default) and Spark behind it (``RECS_ENGINE`` / ``[engine] kind``)."""

from __future__ import annotations

import functools
from pathlib import Path

from recs_pipeline.engine.base import Engine, Session, TableData
from recs_pipeline.settings import ENGINE_KINDS, EngineSettings, check_engine_kind


def create_engine(
    kind: str, path: str | Path, lock_timeout_s: float = 600.0, spark: EngineSettings | None = None
) -> Engine:
    """The engine of ``kind`` (see ``recs_pipeline.settings.ENGINE_KINDS``) on the warehouse at
    ``path`` (DuckDB: the file; Spark: the folder of Parquet tables, run as ``spark`` says)."""
    kind = check_engine_kind(kind)
    if kind == "duckdb":
        from recs_pipeline.engine.duckdb import DuckDBEngine

        return DuckDBEngine(path, lock_timeout_s=lock_timeout_s)
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:  # the optional extra
        raise RuntimeError(
            "the Spark engine needs PySpark and Java 17+: pip install -e '.[spark]' "
            "(make test-spark installs both)"
        ) from exc
    spark = spark or EngineSettings(kind="spark")
    return _spark_engine(str(Path(path).resolve()), spark.spark_master, spark.spark_driver_memory, spark.spark_remote)


@functools.lru_cache(maxsize=8)
def _spark_engine(path: str, master: str, driver_memory: str, remote: str) -> Engine:
    """One Spark engine per warehouse and settings in a process: it remembers which
    tables this process's SparkSession has registered, so a session (one per step, and
    a run's steps share the process) re-registers only the tables rewritten since
    instead of all of them (that was seconds per step)."""
    from recs_pipeline.engine.spark import SparkEngine

    return SparkEngine(path, master=master, driver_memory=driver_memory, remote=remote)


__all__ = ["ENGINE_KINDS", "Engine", "Session", "TableData", "create_engine"]
