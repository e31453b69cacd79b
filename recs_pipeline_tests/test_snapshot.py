"""The published snapshot is updated by copying only changed tables and days, and the
result is the same as a full copy; a full copy is made whenever the shortcut could keep
erased bytes or stale rows (recs_pipeline.engine.snapshot)."""

from __future__ import annotations

import json
import os
from datetime import date

import duckdb
import pandas as pd
import pytest

from recs_pipeline.engine.duckdb import DuckDBEngine
from recs_pipeline.engine.snapshot import manifest_path

D1, D2, D3, D4, D5, D6 = (date(2024, 1, d) for d in range(1, 7))


def events(day: date, n: int, tag: str = "") -> pd.DataFrame:
    return pd.DataFrame({"partition_date": [day] * n, "event_id": [f"{day}-{i}{tag}" for i in range(n)],
                         "qty": list(range(n))})  # fmt: skip


@pytest.fixture
def engine(tmp_path) -> DuckDBEngine:
    engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
    with engine.session() as db:
        for day in (D1, D2, D3, D4, D5):
            db.replace_partition("raw.events", events(day, 50), "partition_date", day)
        db.replace_table("serving.recommendations", "SELECT 'u1' AS user_id, 'i1' AS item_id, 1 AS rank")
        db.replace_table("serving.similar_items", "SELECT 'i1' AS item_id, 'i2' AS similar_item_id")
        db.replace_table("features.old", "SELECT 1 AS x")
        db.replace_table("privacy.erasure_log", "SELECT 'digest-0' AS pseudonym_sha256")
    return engine


def contents(path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted (a snapshot's row order is not part of its contents)."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY 1").fetchall()
        return {n: sorted(con.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for (n,) in names}


def test_an_updated_snapshot_copies_only_what_changed_and_equals_a_full_copy(engine, tmp_path):
    target = tmp_path / "published" / "warehouse.duckdb"
    first = engine.publish_snapshot(target)
    assert first.mode == "full" and first.reason == "no previous snapshot"
    assert manifest_path(target).exists()

    with engine.session() as db:
        db.replace_partition("raw.events", events(D2, 40, "b"), "partition_date", D2)  # a day re-loaded
        db.replace_partition("raw.events", events(D6, 30), "partition_date", D6)  # the new day
        db.delete_rows("raw.events", "partition_date = DATE '2024-01-01'")  # a day dropped (retention)
        db.replace_table("serving.recommendations", "SELECT 'u1' AS user_id, 'i3' AS item_id, 1 AS rank")
        db.replace_table("features.new", "SELECT 2 AS y")
        db.execute("DROP TABLE features.old")
    second = engine.publish_snapshot(target)

    assert second.mode == "incremental", second.reason
    assert second.partitions_copied == {"raw.events": ["2024-01-02", "2024-01-06"]}
    assert second.tables_copied == ["features.new", "serving.recommendations"]
    assert second.tables_kept == 2  # similar_items and the erasure log
    assert second.rows_written == 40 + 30 + 1 + 1
    full = engine.publish_snapshot(tmp_path / "full" / "warehouse.duckdb", full=True)
    assert full.mode == "full"
    assert contents(target) == contents(full.path) == contents(engine.path)
    assert "features.old" not in contents(target)

    # The update deleted 100 of 222 rows (two days' old rows): the next publish reclaims them.
    third = engine.publish_snapshot(target)
    assert third.mode == "full" and ("deleted" in third.reason or "free" in third.reason)
    fourth = engine.publish_snapshot(target)  # nothing changed: nothing copied
    assert fourth.mode == "incremental" and fourth.rows_written == 0 and not fourth.partitions_copied
    assert contents(target) == contents(engine.path)


def test_a_change_of_columns_replaces_the_table_whole(engine, tmp_path):
    target = tmp_path / "published" / "warehouse.duckdb"
    engine.publish_snapshot(target)
    with engine.session() as db:
        db.execute("ALTER TABLE raw.events ADD COLUMN note VARCHAR DEFAULT 'x'")
    report = engine.publish_snapshot(target)
    assert report.mode == "incremental" and report.tables_copied == ["raw.events"]
    assert contents(target) == contents(engine.path)


def test_an_erasure_or_a_replaced_file_means_a_full_copy(engine, tmp_path):
    """After an erasure the old file's freed pages may still hold the erased rows, so it
    is never the base of an update; nor is a file the manifest does not describe."""
    target = tmp_path / "published" / "warehouse.duckdb"
    engine.publish_snapshot(target)
    with engine.session() as db:
        db.append_rows("privacy.erasure_log", "SELECT 'digest-1' AS pseudonym_sha256")
    report = engine.publish_snapshot(target)
    assert report.mode == "full" and "privacy.erasure_log" in report.reason

    # An erasure rebuilds the snapshot itself (a new file): the manifest no longer matches.
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    report = engine.publish_snapshot(target)
    assert report.mode == "full" and "not the one the manifest describes" in report.reason

    manifest_path(target).write_text("{not json")  # a torn manifest
    assert engine.publish_snapshot(target).mode == "full"
    assert contents(target) == contents(engine.path)


def test_rows_deleted_by_updates_are_reclaimed_by_a_full_copy(engine, tmp_path):
    """DuckDB keeps deleted rows in their row groups: once updates have deleted more than
    a tenth of the rows, the next publish writes a fresh file."""
    target = tmp_path / "published" / "warehouse.duckdb"
    engine.publish_snapshot(target)
    with engine.session() as db:
        db.replace_partition("raw.events", events(D1, 50, "b"), "partition_date", D1)  # 50 of 253 rows
    assert engine.publish_snapshot(target).mode == "incremental"
    assert json.loads(manifest_path(target).read_text())["deleted_rows"] == 50
    report = engine.publish_snapshot(target)
    assert report.mode == "full" and "deleted" in report.reason
    assert json.loads(manifest_path(target).read_text())["deleted_rows"] == 0


def test_the_publish_after_an_erasure_rebuilt_the_snapshot_is_a_full_copy(engine, tmp_path):
    from recs_pipeline.privacy.erasure import rebuild_snapshot_without

    target = tmp_path / "published" / "warehouse.duckdb"
    engine.publish_snapshot(target)
    counts = rebuild_snapshot_without(target, {"u1": "u1"})
    assert counts["u1"] == {"serving.recommendations": 1}
    report = engine.publish_snapshot(target)
    assert report.mode == "full" and "not the one the manifest describes" in report.reason
