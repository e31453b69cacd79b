"""Metadata every warehouse asset reports: row count, column schema and a preview."""

from __future__ import annotations

import dagster as dg
import duckdb


def table_metadata(con: duckdb.DuckDBPyConnection, table: str, where: str = "", preview_rows: int = 5) -> dict:
    """Row count, schema and a small markdown preview of ``table`` (a trusted identifier)."""
    cols = con.execute(f"DESCRIBE {table}").fetchall()
    filter_sql = f" WHERE {where}" if where else ""
    n_rows = con.execute(f"SELECT count(*) FROM {table}{filter_sql}").fetchall()[0][0]
    preview = con.execute(f"SELECT * FROM {table}{filter_sql} LIMIT {int(preview_rows)}").df()
    return {
        "dagster/row_count": dg.MetadataValue.int(int(n_rows)),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=c[0], type=str(c[1])) for c in cols]
        ),
        "table": dg.MetadataValue.text(table),
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "(no rows)"),
    }
