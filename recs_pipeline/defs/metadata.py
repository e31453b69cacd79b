"""Metadata every warehouse asset reports: row count, column schema and a preview."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from recs_pipeline.defs.columns import column_description
from recs_pipeline.engine import Session


def column_schema(table: str, columns: Iterable[tuple[str, str]]) -> dg.TableSchema:
    """``dagster/column_schema`` of ``table`` from (name, type) pairs, each column with its
    description from recs_pipeline.defs.columns (None when it has none)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=str(type_), description=column_description(table, name))
            for name, type_ in columns
        ]
    )


def table_metadata(db: Session, table: str, where: str = "", preview_rows: int = 5) -> dict:
    """Row count, schema (with column descriptions) and a small markdown preview of
    ``table`` (a trusted identifier), read through an engine session."""
    filter_sql = f" WHERE {where}" if where else ""
    n_rows = db.scalar(f"SELECT count(*) FROM {table}{filter_sql}")
    preview = db.df(f"SELECT * FROM {table}{filter_sql} LIMIT {int(preview_rows)}")
    return {
        "dagster/row_count": dg.MetadataValue.int(int(n_rows)),
        "dagster/column_schema": column_schema(table, db.columns(table)),
        "table": dg.MetadataValue.text(table),
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "(no rows)"),
    }


def gate_result(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey, passed_key: str, what: str,
                extra: tuple[str, ...] = ()) -> dg.AssetCheckResult:  # fmt: skip
    """A WARN check that reports the promotion gate an asset recorded in its latest
    materialisation's metadata (``passed_key``, ``promotion_reason`` and ``extra``)."""
    event = context.instance.get_latest_materialization_event(asset)
    meta = event.asset_materialization.metadata if event else {}
    return dg.AssetCheckResult(
        passed=bool(meta[passed_key].value) if passed_key in meta else False,
        severity=dg.AssetCheckSeverity.WARN,
        description=meta["promotion_reason"].value if "promotion_reason" in meta else f"no {what} yet",
        metadata={key: meta[key].value if key in meta else "" for key in extra},
    )
