"""Jobs, the nightly schedule and the new-files sensor."""


import json
from datetime import timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from recs_pipeline.resources import ShopSourceResource
from recs_pipeline.settings import Settings

RAW_EVENTS = dg.AssetKey(["raw", "events"])


def build_jobs(partitions: dg.DailyPartitionsDefinition) -> dict[str, UnresolvedAssetJobDefinition]:
    # One job for the whole graph: blocking checks only stop downstream steps inside
    # the same run, so ingest, transform, features, model and serving run together.
    nightly = dg.define_asset_job(
        "nightly_job",
        selection=dg.AssetSelection.all(),
        partitions_def=partitions,
        description="A day's (or a range's) files through every stage: raw, dbt, checks, features and downstream.",
    )
    return {"nightly_job": nightly}


def build_schedule(settings: Settings, job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly_schedule",
        job=job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every night: yesterday's partition and everything downstream, when its file has landed.",
    )
    def nightly_schedule(context: dg.ScheduleEvaluationContext, shop_source: ShopSourceResource):
        day = (context.scheduled_execution_time - timedelta(days=1)).date()
        source = shop_source.source()
        if day not in source.event_files():
            return dg.SkipReason(f"no events file for {day} has landed in {source.root}")
        return dg.RunRequest(run_key=f"nightly-{day}", partition_key=day.isoformat())

    return nightly_schedule


def build_sensor(job: UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_landing_files_sensor",
        job=job,
        minimum_interval_seconds=60,
        # The nightly schedule is the default trigger; switch this on for loading as files land.
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Launches a run for each day whose events file is new (never loaded) or has changed.",
    )
    def new_landing_files_sensor(context: dg.SensorEvaluationContext, shop_source: ShopSourceResource):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        loaded = set(context.instance.get_materialized_partitions(RAW_EVENTS))
        for day, path in sorted(shop_source.source().event_files().items()):
            stat = path.stat()
            signature = f"{stat.st_mtime_ns}:{stat.st_size}"
            key = day.isoformat()
            known = seen.get(key)
            if known == signature or (known is None and key in loaded and not seen):
                # First tick: days already materialised (by `make run` or a backfill) are baselined.
                seen[key] = signature
                continue
            seen[key] = signature
            yield dg.RunRequest(run_key=f"{key}:{signature}", partition_key=key)
        context.update_cursor(json.dumps(seen, sort_keys=True))

    return new_landing_files_sensor
