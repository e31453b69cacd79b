"""Raw layer: the shop's files loaded as text into ``raw.events`` (daily partitions),
``raw.items`` and ``raw.users`` (snapshots)."""

from collections.abc import Iterator

import dagster as dg

from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.engine.duckdb import DuckDBSession  # not yet migrated: a raw connection in a session
from recs_pipeline.defs.partitions import days_in_window
from recs_pipeline.defs.privacy import ERASURE_LOG_KEY, PrivacyResource
from recs_pipeline.privacy import apply_retention, apply_retention_on
from recs_pipeline.resources import ShopSourceResource, WarehouseResource
from recs_pipeline.sources.loader import RejectedFile, load_event_files, load_items, load_users, record_rejected_files
from recs_pipeline.sources.staged import load_event_files_into, load_items_into, load_users_into


RAW_EVENTS_KEY = dg.AssetKey(["raw", "events"])
REJECTED_FILES_KEY = dg.AssetKey(["quality", "rejected_files"])


def build_ingest_assets(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                RAW_EVENTS_KEY,
                deps=[ERASURE_LOG_KEY],  # erasure requests are carried out before anything loads
                group_name="ingest",
                kinds={"duckdb"},
                description="Behaviour events as text, one row per line of each day's file (malformed lines "
                "included with parse_error), with source_file and source_line. Re-loading a day replaces it. "
                "User ids are pseudonymised (keyed hash), erased users left out, and line-level history older "
                "than the retention period dropped (docs/privacy.md). A day whose file is refused keeps what "
                "was loaded before and is listed in quality/rejected_files; the other days load.",
            ),
            dg.AssetSpec(
                REJECTED_FILES_KEY,
                group_name="quality",
                kinds={"duckdb"},
                description="Day files the load refused (header, schema drift, two files for a day, unreadable): "
                "file, day, reason, first offending line, lines rejected, when detected and when a later "
                "delivery of the day loaded (resolved_at).",
            ),
        ],
        name="raw__events",  # the step key of the single asset it was before
        can_subset=True,  # `recs run --select raw/events` works as it did
        partitions_def=partitions,
        # A backfill of many days runs as one run: one dbt call for the whole range.
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
    )
    def raw_events(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        shop_source: ShopSourceResource,
        privacy: PrivacyResource,
    ) -> Iterator[dg.MaterializeResult]:
        source = shop_source.source()
        days = days_in_window(context)
        available = set(source.event_days())
        missing = [d for d in days if d not in available]
        if missing and len(days) == 1:
            raise dg.Failure(
                f"No events file for {missing[0]} in {source.root} ({source.kind} source).",
                metadata={"expected_day": str(missing[0]), "source_root": str(source.root)},
            )
        if missing:
            # Shops close on some days (Online Retail has no Saturday files): a range
            # backfill loads the days that exist and reports the others.
            context.log.warning(f"{len(missing)} day(s) in the range have no file, e.g. {missing[:5]}")
        to_load = [d for d in days if d in available]
        window = f"partition_date BETWEEN DATE '{days[0]}' AND DATE '{days[-1]}'"
        if warehouse.kind == "duckdb":
            # Straight into the file, the days and their verdicts in transactions.
            with warehouse.connect() as con:
                report = load_event_files(con, source, to_load, privacy.pseudonymizer(context.log))
                record_rejected_files(con, report)
                retention = apply_retention(con, privacy.retention_days)
                meta = table_metadata(DuckDBSession(con), "raw.events", where=window)
                rejected_meta = table_metadata(DuckDBSession(con), "quality.rejected_files", where=f"{window} AND resolved_at IS NULL")
        else:
            # The same loader, staged in a scratch DuckDB, each day handed to the engine.
            with warehouse.session() as db:
                report = load_event_files_into(db, source, to_load, privacy.pseudonymizer(context.log))
                retention = apply_retention_on(db, privacy.retention_days)
                meta = table_metadata(db, "raw.events", where=window)
                rejected_meta = table_metadata(db, "quality.rejected_files", where=f"{window} AND resolved_at IS NULL")
        for warning in report.warnings:
            context.log.warning(warning)
        for rejected in report.rejected:
            context.log.error(f"rejected {rejected.source_file} ({rejected.day}): {rejected.reason}")
        loads = report.loads
        if report.rejected and not loads:
            # The nightly run's own file (or every file of a range) was refused: fail loudly.
            first = report.rejected[0]
            raise dg.Failure(
                f"{first.reason}" + (f" (and {len(report.rejected) - 1} more rejected file(s))" if len(report.rejected) > 1 else ""),
                metadata={"rejected_files": dg.MetadataValue.json([_rejected_json(r) for r in report.rejected])},
            )
        events_metadata = {
            **meta,
            "days_loaded": len(loads),
            "days_rejected": len(report.rejected),
            "days_without_file": dg.MetadataValue.text(", ".join(map(str, missing[:20])) or "none"),
            "malformed_lines": sum(l.malformed_lines for l in loads),
            "file_warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in report.warnings) or "none"),
            "source": dg.MetadataValue.text(f"{source.kind}: {source.root}"),
            "users_pseudonymised": sum(l.distinct_users for l in loads),
            "pseudonymise_seconds": dg.MetadataValue.float(round(sum(l.pseudonymise_seconds for l in loads), 3)),
            "suppressed_rows": sum(l.suppressed_rows for l in loads),
            "retention": dg.MetadataValue.text(retention.describe()),
            "retention_rows_dropped": retention.total_dropped,
            "retention_rows_dropped_by_table": dg.MetadataValue.json(retention.rows_dropped),
        }
        rejected_metadata = {
            **rejected_meta,
            "rejected_files": dg.MetadataValue.json([_rejected_json(r) for r in report.rejected]),
            "rejected_lines": sum(r.rejected_lines for r in report.rejected),
        }
        # raw/events may be selected alone: the rejected files are recorded all the same.
        if RAW_EVENTS_KEY in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=RAW_EVENTS_KEY, metadata=events_metadata)
        if REJECTED_FILES_KEY in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=REJECTED_FILES_KEY, metadata=rejected_metadata)

    @dg.asset(
        key=["raw", "items"],
        group_name="ingest",
        kinds={"duckdb"},
        pool="duckdb",
        description="The latest catalogue snapshot as text (item, category, brand, price, description, stock).",
    )
    def raw_items(warehouse: WarehouseResource, shop_source: ShopSourceResource) -> dg.MaterializeResult:
        if warehouse.kind != "duckdb":
            with warehouse.session() as db:
                load_items_into(db, shop_source.source())
                return dg.MaterializeResult(metadata=table_metadata(db, "raw.items"))
        with warehouse.connect() as con:
            load_items(con, shop_source.source())
            return dg.MaterializeResult(metadata=table_metadata(DuckDBSession(con), "raw.items"))

    @dg.asset(
        key=["raw", "users"],
        deps=[ERASURE_LOG_KEY],
        group_name="ingest",
        kinds={"duckdb"},
        pool="duckdb",
        description="The latest user snapshot as text (signup, age band, gender, country, consent): canonical "
        "columns only, so names, e-mails and addresses in the file never load; ids pseudonymised.",
    )
    def raw_users(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        shop_source: ShopSourceResource,
        privacy: PrivacyResource,
    ) -> dg.MaterializeResult:
        if warehouse.kind != "duckdb":
            with warehouse.session() as db:
                load_users_into(db, shop_source.source(), privacy.pseudonymizer(context.log))
                return dg.MaterializeResult(metadata=table_metadata(db, "raw.users"))
        with warehouse.connect() as con:
            load_users(con, shop_source.source(), privacy.pseudonymizer(context.log))
            return dg.MaterializeResult(metadata=table_metadata(DuckDBSession(con), "raw.users"))

    return [raw_events, raw_items, raw_users]


def _rejected_json(rejected: RejectedFile) -> dict:
    return {
        "day": rejected.day.isoformat(),
        "source_file": rejected.source_file,
        "reason": rejected.reason,
        "first_offending_line": rejected.first_offending_line,
        "rejected_lines": rejected.rejected_lines,
    }
