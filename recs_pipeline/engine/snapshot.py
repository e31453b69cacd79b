"""The published snapshot, brought up to date by copying only what changed.

Analysts query a DuckDB file (``data/published/warehouse.duckdb``) that every run
replaces at its end. Copying every table each night costs what writing the whole
warehouse costs (36 s at 10M events), while a nightly run changes a few tables and,
of the daily tables, a day or two. So each table gets a fingerprint (its columns, and
per ``partition_date`` when it has one, else for the whole table, the row count and
the sum of the rows' hashes: a cheap scan, several times faster than a write), kept in
a manifest next to the snapshot. The next publish copies the previous file, replaces
the tables whose fingerprint changed and, in a daily table, only the days that did,
then swaps the new file in atomically, as before. The result holds the same rows as a
full copy (the tests compare the two).

A full copy is made instead whenever the shortcut could be wrong or wasteful:

- no snapshot or manifest yet, another manifest format or DuckDB version;
- the snapshot file is not the one the manifest describes (its size or modification
  time differ): an erasure rebuilt it, or someone replaced it;
- a table of the ``privacy`` schema changed: an erasure happened, and the old file's
  freed pages may still hold the erased users' bytes; only a fresh file holds none;
- views, macros or sequences changed (they are copied only by a full copy);
- the file has grown wasteful: more than :data:`MAX_FREE_SHARE` of its blocks free, or
  more than :data:`MAX_DELETED_SHARE` of its rows deleted by earlier updates since the
  last full copy (DuckDB keeps deleted rows in their row groups until rewritten).

The functions take a DuckDB connection on which each source table is a relation (a
table of an attached warehouse file, or ``read_parquet`` over a Spark table's
folder), so both engines publish the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from recs_pipeline.sources.base import sql_literal

PARTITION_COLUMN = "partition_date"  # the daily tables' partition column (raw.events, stg_events, ...)
MANIFEST_FORMAT = 1
# Free blocks are reused by the next update's writes, so they stay about one night's
# replaced tables; past half the file, a full copy halves its size.
MAX_FREE_SHARE = 0.5
MAX_DELETED_SHARE = 0.10
# A daily table with more than this share of its rows changed is replaced whole:
# deleting and re-inserting most of it costs more than writing it anew.
MAX_CHANGED_SHARE = 0.5
CLEAN_SCHEMAS_ONLY = ("privacy",)  # a change here means an erasure: full copy


@dataclass
class SnapshotReport:
    """What a publish did (the asset's metadata)."""

    path: Path
    mode: str  # "full" or "incremental"
    reason: str  # why a full copy, or "unchanged tables kept"
    tables_copied: list[str] = field(default_factory=list)  # replaced whole
    partitions_copied: dict[str, list[str]] = field(default_factory=dict)  # table -> days re-copied
    tables_kept: int = 0
    rows_written: int = 0
    seconds: float = 0.0


def manifest_path(target: Path) -> Path:
    return Path(target).with_name(Path(target).stem + ".manifest.json")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str) -> str:
    """``schema.table`` quoted for SQL."""
    schema, table = name.split(".", 1)
    return f"{_quote(schema)}.{_quote(table)}"


def fingerprint(con: duckdb.DuckDBPyConnection, relation: str) -> dict:
    """Columns and (per ``partition_date`` or whole) row count and sum of row hashes."""
    columns = [[c[0], c[1]] for c in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    partitioned = any(name == PARTITION_COLUMN for name, _ in columns)
    key = f"CAST(t.{PARTITION_COLUMN} AS VARCHAR)" if partitioned else "'*'"
    rows = con.execute(
        f"SELECT {key} AS part, count(*), CAST(coalesce(sum(CAST(hash(t) AS HUGEINT)), 0) AS VARCHAR) "
        f"FROM {relation} AS t GROUP BY ALL"
    ).fetchall()
    parts = {("null" if part is None else part): [int(n), digest] for part, n, digest in rows}
    return {"columns": columns, "partitioned": partitioned, "parts": parts}


def _objects(con: duckdb.DuckDBPyConnection, catalog: str | None) -> list[str]:
    """The SQL of the views, macros and sequences of ``catalog`` (none when not a DuckDB file)."""
    if catalog is None:
        return []
    lit = sql_literal(catalog)
    found = con.execute(
        f"SELECT sql FROM duckdb_views() WHERE database_name = {lit} AND NOT internal "
        f"UNION ALL SELECT sql FROM duckdb_sequences() WHERE database_name = {lit} "
        f"UNION ALL SELECT function_name || ':' || coalesce(macro_definition, '') FROM duckdb_functions() "
        f"WHERE database_name = {lit} AND function_type IN ('macro', 'table_macro') AND NOT internal"
    ).fetchall()
    return sorted(str(r[0]) for r in found)


def _file_identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _part_predicate(parts: list[str]) -> str:
    values = [p for p in parts if p != "null"]
    terms = []
    if values:
        terms.append(f"CAST({PARTITION_COLUMN} AS VARCHAR) IN ({', '.join(sql_literal(v) for v in values)})")
    if len(values) < len(parts):
        terms.append(f"{PARTITION_COLUMN} IS NULL")
    return " OR ".join(terms)


def _full_reason(previous: dict | None, target: Path, current: dict, objects: list[str]) -> str | None:
    """Why the snapshot must be a full copy this time, or None when it can be updated."""
    if not target.exists() or previous is None:
        return "no previous snapshot"
    if previous.get("format") != MANIFEST_FORMAT or previous.get("duckdb") != duckdb.__version__:
        return "manifest of another format or DuckDB version"
    if previous.get("file") != _file_identity(target):
        return "the snapshot file is not the one the manifest describes (rebuilt by an erasure, or replaced)"
    old_tables = previous["tables"]
    for name, new in current.items():
        if name.split(".", 1)[0] in CLEAN_SCHEMAS_ONLY and old_tables.get(name) != new:
            return f"{name} changed (an erasure: a fresh file holds none of the erased bytes)"
    if previous.get("objects") != objects:
        return "views, macros or sequences changed"
    if previous.get("free_share", 0.0) > MAX_FREE_SHARE:
        return f"{previous['free_share']:.0%} of the snapshot's blocks are free"
    rows = max(previous.get("rows", 0), 1)
    if previous.get("deleted_rows", 0) / rows > MAX_DELETED_SHARE:
        return f"{previous['deleted_rows'] / rows:.0%} of the rows deleted by updates since the last full copy"
    return None


def publish(
    con: duckdb.DuckDBPyConnection,
    sources: dict[str, str],
    target: Path,
    *,
    catalog: str | None = None,
    full: bool = False,
) -> SnapshotReport:
    """Bring the snapshot at ``target`` up to date with ``sources`` ("schema.table" ->
    a relation readable on ``con``) and swap it in. ``catalog``: the attached warehouse
    when the sources are one DuckDB file (its views and macros are copied too, and a
    full copy is DuckDB's ``COPY FROM DATABASE``). ``full``: copy everything anyway."""
    started = time.perf_counter()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = manifest_path(target)
    tmp = target.with_suffix(".tmp.duckdb")
    tmp_manifest = manifest.with_suffix(".tmp.json")
    for leftover in (tmp, Path(f"{tmp}.wal"), tmp_manifest):
        leftover.unlink(missing_ok=True)
    try:
        previous = json.loads(manifest.read_text()) if manifest.exists() else None
    except (OSError, json.JSONDecodeError):
        previous = None

    current = {name: fingerprint(con, relation) for name, relation in sorted(sources.items())}
    objects = _objects(con, catalog)
    reason = "asked for a full copy" if full else _full_reason(previous, target, current, objects)
    report = SnapshotReport(path=target, mode="full" if reason else "incremental", reason=reason or "")
    deleted_rows = 0
    if reason:
        con.execute(f"ATTACH {sql_literal(tmp)} AS snapshot")
        if catalog is not None:
            con.execute(f"COPY FROM DATABASE {_quote(catalog)} TO snapshot")
        else:
            for name, relation in sorted(sources.items()):
                con.execute(f"CREATE SCHEMA IF NOT EXISTS snapshot.{_quote(name.split('.', 1)[0])}")
                con.execute(f"CREATE TABLE snapshot.{qualified(name)} AS SELECT * FROM {relation}")
        report.tables_copied = sorted(sources)
        report.rows_written = sum(n for fp in current.values() for n, _ in fp["parts"].values())
    else:
        shutil.copyfile(target, tmp)
        deleted_rows = previous.get("deleted_rows", 0)
        con.execute(f"ATTACH {sql_literal(tmp)} AS snapshot")
        old_tables = previous["tables"]
        for name in sorted(set(old_tables) - set(current)):
            con.execute(f"DROP TABLE IF EXISTS snapshot.{qualified(name)}")
        for name, new in current.items():
            deleted_rows += _update_table(con, name, sources[name], old_tables.get(name), new, report)
        report.reason = f"{report.tables_kept} unchanged table(s) kept"
    con.execute("CHECKPOINT snapshot")
    size = con.execute("SELECT total_blocks, free_blocks FROM pragma_database_size() WHERE database_name = 'snapshot'").fetchone()
    con.execute("DETACH snapshot")
    rows = sum(n for fp in current.values() for n, _ in fp["parts"].values())
    tmp_manifest.write_text(json.dumps({
        "format": MANIFEST_FORMAT, "duckdb": duckdb.__version__, "file": _file_identity(tmp),
        "rows": rows, "deleted_rows": deleted_rows, "free_share": (size[1] / size[0]) if size and size[0] else 0.0,
        "objects": objects, "tables": current,
    }))  # fmt: skip
    # The manifest names the file by size and modification time (a rename keeps both):
    # should a crash fall between the two renames, the next publish sees the mismatch
    # and copies in full.
    os.replace(tmp, target)
    os.replace(tmp_manifest, manifest)
    report.seconds = time.perf_counter() - started
    return report


def _update_table(con, name: str, relation: str, old: dict | None, new: dict, report: SnapshotReport) -> int:
    """Make ``snapshot.<name>`` equal to ``relation``; returns the rows it deleted."""
    target = f"snapshot.{qualified(name)}"
    if old == new:
        report.tables_kept += 1
        return 0
    total = sum(n for n, _ in new["parts"].values())
    if old is not None and new["partitioned"] and old["partitioned"] and old["columns"] == new["columns"]:
        changed = sorted(p for p, fp in new["parts"].items() if old["parts"].get(p) != fp)
        gone = sorted(p for p in old["parts"] if p not in new["parts"] or p in changed)
        incoming = sum(new["parts"][p][0] for p in changed)
        if incoming <= MAX_CHANGED_SHARE * total:
            deleted = sum(old["parts"][p][0] for p in gone)
            if gone:
                con.execute(f"DELETE FROM {target} WHERE {_part_predicate(gone)}")
            if changed:
                con.execute(f"INSERT INTO {target} SELECT * FROM {relation} WHERE {_part_predicate(changed)}")
            report.partitions_copied[name] = changed
            report.rows_written += incoming
            return deleted
    con.execute(f"CREATE SCHEMA IF NOT EXISTS snapshot.{_quote(name.split('.', 1)[0])}")
    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {relation}")
    report.tables_copied.append(name)
    report.rows_written += total
    return 0


def report_metadata(report: SnapshotReport) -> dict:
    """The report as plain values (for Dagster metadata and logs)."""
    values = asdict(report)
    values["path"] = str(report.path)
    return values
