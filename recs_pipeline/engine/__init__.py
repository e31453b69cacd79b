"""One engine interface for everything asset code does with tables (recs_pipeline.engine.base),
with DuckDB behind it (the default; ``RECS_ENGINE`` / ``[engine] kind``)."""

from __future__ import annotations

from pathlib import Path

from recs_pipeline.engine.base import Engine, Session, TableData
from recs_pipeline.settings import ENGINE_KINDS, check_engine_kind


def create_engine(kind: str, path: str | Path, lock_timeout_s: float = 600.0) -> Engine:
    """The engine of ``kind`` (see ``recs_pipeline.settings.ENGINE_KINDS``) on the warehouse at ``path``."""
    kind = check_engine_kind(kind)
    if kind == "duckdb":
        from recs_pipeline.engine.duckdb import DuckDBEngine

        return DuckDBEngine(path, lock_timeout_s=lock_timeout_s)
    raise AssertionError(f"engine {kind!r} is accepted by settings but not built here")  # pragma: no cover


__all__ = ["ENGINE_KINDS", "Engine", "Session", "TableData", "create_engine"]
