"""Raw layer: the shop's files loaded as text into ``raw.events`` (daily partitions),
``raw.items`` and ``raw.users`` (snapshots)."""


import dagster as dg

from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.defs.partitions import days_in_window
from recs_pipeline.defs.privacy import ERASURE_LOG_KEY, PrivacyResource
from recs_pipeline.privacy import apply_retention
from recs_pipeline.resources import ShopSourceResource, WarehouseResource
from recs_pipeline.sources.loader import load_event_days, load_items, load_users


def build_ingest_assets(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=["raw", "events"],
        deps=[ERASURE_LOG_KEY],  # erasure requests are carried out before anything loads
        partitions_def=partitions,
        # A backfill of many days runs as one run: one dbt call for the whole range.
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ingest",
        kinds={"duckdb"},
        pool="duckdb",
        description="Behaviour events as text, one row per line of each day's file (malformed lines "
        "included with parse_error), with source_file and source_line. Re-loading a day replaces it. "
        "User ids are pseudonymised (keyed hash), erased users left out, and line-level history older "
        "than the retention period dropped (docs/privacy.md).",
    )
    def raw_events(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        shop_source: ShopSourceResource,
        privacy: PrivacyResource,
    ) -> dg.MaterializeResult:
        source = shop_source.source()
        available = source.event_files()
        days = days_in_window(context)
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
        with warehouse.connect() as con:
            loads = load_event_days(con, source, [d for d in days if d in available], privacy.pseudonymizer(context.log))
            retention = apply_retention(con, privacy.retention_days)
            meta = table_metadata(
                con, "raw.events", where=f"partition_date BETWEEN DATE '{days[0]}' AND DATE '{days[-1]}'"
            )
        return dg.MaterializeResult(
            metadata={
                **meta,
                "days_loaded": len(loads),
                "days_without_file": dg.MetadataValue.text(", ".join(map(str, missing[:20])) or "none"),
                "malformed_lines": sum(l.malformed_lines for l in loads),
                "source": dg.MetadataValue.text(f"{source.kind}: {source.root}"),
                "users_pseudonymised": sum(l.distinct_users for l in loads),
                "pseudonymise_seconds": dg.MetadataValue.float(round(sum(l.pseudonymise_seconds for l in loads), 3)),
                "suppressed_rows": sum(l.suppressed_rows for l in loads),
                "retention": dg.MetadataValue.text(retention.describe()),
                "retention_rows_dropped": retention.total_dropped,
                "retention_rows_dropped_by_table": dg.MetadataValue.json(retention.rows_dropped),
            }
        )

    @dg.asset(
        key=["raw", "items"],
        group_name="ingest",
        kinds={"duckdb"},
        pool="duckdb",
        description="The latest catalogue snapshot as text (item, category, brand, price, description, stock).",
    )
    def raw_items(warehouse: WarehouseResource, shop_source: ShopSourceResource) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            load_items(con, shop_source.source())
            return dg.MaterializeResult(metadata=table_metadata(con, "raw.items"))

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
        with warehouse.connect() as con:
            load_users(con, shop_source.source(), privacy.pseudonymizer(context.log))
            return dg.MaterializeResult(metadata=table_metadata(con, "raw.users"))

    return [raw_events, raw_items, raw_users]
