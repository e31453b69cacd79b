"""Publish: a read-only copy of the warehouse for SQL users.

DuckDB lets one process write a file, and while it does no other process can open it,
not even read-only. Analysts therefore query a snapshot taken at the end of each run
(``recs sql`` does by default), never the live file the nightly run writes.
"""

import os
from pathlib import Path

import dagster as dg

from recs_pipeline.resources import WarehouseResource
from recs_pipeline.sources.base import sql_literal
from recs_pipeline.warehouse import attach_with_retry, connection

LEAF_ASSETS = [
    dg.AssetKey(["feedback", "experiment_results"]),
    dg.AssetKey(["marketing", "personalized_content"]),
    dg.AssetKey(["serving", "similar_items"]),
]


def snapshot_path(warehouse_path: str | Path) -> Path:
    return Path(warehouse_path).parent / "published" / "warehouse.duckdb"


def publish_snapshot(warehouse_path: str | Path) -> Path:
    """Copy every table into a new file, then swap it in atomically."""
    target = snapshot_path(warehouse_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    with connection(":memory:") as con:
        attach_with_retry(con, f"ATTACH {sql_literal(warehouse_path)} AS warehouse (READ_ONLY)")
        con.execute(f"ATTACH {sql_literal(tmp)} AS snapshot")
        con.execute("COPY FROM DATABASE warehouse TO snapshot")
        con.execute("DETACH snapshot")
        con.execute("DETACH warehouse")
    os.replace(tmp, target)
    return target


@dg.asset(
    key=["published", "warehouse_snapshot"],
    deps=LEAF_ASSETS,
    group_name="publish",
    kinds={"duckdb"},
    pool="duckdb",
    description="A read-only copy of every table (data/published/warehouse.duckdb) for SQL users, "
    "so that their queries never fight the nightly run for the warehouse lock.",
)
def warehouse_snapshot(warehouse: WarehouseResource) -> dg.MaterializeResult:
    target = publish_snapshot(warehouse.path)
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(target)), "bytes": target.stat().st_size}
    )
