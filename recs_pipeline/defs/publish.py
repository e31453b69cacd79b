"""Publish: a read-only copy of the warehouse for SQL users.

DuckDB lets one process write a file, and while it does no other process can open it,
not even read-only. Analysts therefore query a snapshot taken at the end of each run
(``recs sql`` does by default), never the live file the nightly run writes. The engine
writes the copy (``Engine.publish_snapshot``), copying only the tables and days that
changed since the previous one (``recs_pipeline.engine.snapshot``).
"""

from pathlib import Path

import dagster as dg

from recs_pipeline.engine.snapshot import SnapshotReport
from recs_pipeline.resources import EngineResource

# The last steps of a nightly run: the snapshot waits for them, so it never misses a
# table the run rewrites (test_definitions checks that nothing else comes later).
LEAF_ASSETS = [
    dg.AssetKey(["feedback", "experiment_results"]),
    dg.AssetKey(["feedback", "campaign_results"]),
    dg.AssetKey(["marketing", "personalized_content"]),
    dg.AssetKey(["marketing", "campaign_sends"]),
    dg.AssetKey(["serving", "similar_items"]),
]


def snapshot_metadata(report: SnapshotReport) -> dict:
    """What the publish copied and why (a full copy says why it could not update)."""
    partitions = sum(len(days) for days in report.partitions_copied.values())
    return {
        "path": dg.MetadataValue.path(str(report.path)),
        "bytes": report.path.stat().st_size,
        "mode": report.mode,
        "reason": report.reason,
        "tables_copied": len(report.tables_copied),
        "days_copied": partitions,
        "tables_kept": report.tables_kept,
        "rows_written": report.rows_written,
        "changed": dg.MetadataValue.json(
            {"tables": report.tables_copied, "days": report.partitions_copied}
        ),
    }


def snapshot_path(warehouse_path: str | Path) -> Path:
    return Path(warehouse_path).parent / "published" / "warehouse.duckdb"


@dg.asset(
    key=["published", "warehouse_snapshot"],
    deps=LEAF_ASSETS,
    group_name="publish",
    kinds={"duckdb"},
    pool="duckdb",
    description="A read-only copy of every table (data/published/warehouse.duckdb) for SQL users, "
    "so that their queries never fight the nightly run for the warehouse lock.",
)
def warehouse_snapshot(warehouse: EngineResource) -> dg.MaterializeResult:
    report = warehouse.engine().publish_snapshot(snapshot_path(warehouse.path))
    return dg.MaterializeResult(metadata=snapshot_metadata(report))
