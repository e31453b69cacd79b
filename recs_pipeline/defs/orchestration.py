"""Jobs, the nightly schedule and the new-files sensor."""


import hashlib
import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from recs_pipeline.defs.tuning import TUNED_KEY
from recs_pipeline.resources import EngineResource, ShopSourceResource
from recs_pipeline.settings import Settings

RAW_EVENTS = dg.AssetKey(["raw", "events"])


def build_jobs(partitions: dg.DailyPartitionsDefinition) -> dict[str, UnresolvedAssetJobDefinition]:
    # One job for the whole graph: blocking checks only stop downstream steps inside
    # the same run, so ingest, transform, features, model and serving run together.
    # ...but tuning (minutes of Optuna trials) runs only when asked, in its own job.
    nightly = dg.define_asset_job(
        "nightly_job",
        selection=dg.AssetSelection.all() - dg.AssetSelection.assets(TUNED_KEY),
        partitions_def=partitions,
        description="A day's (or a range's) files through every stage: raw, dbt, checks, features and downstream.",
    )
    tuning = dg.define_asset_job(
        "tuning_job",
        selection=dg.AssetSelection.assets(TUNED_KEY),
        description="Optuna over LightFM, TIFU-KNN and the ranker on a validation split before the hold-out; the "
        "best parameters go to <model_dir>/tuned.json for later runs (`recs tune`).",
    )
    return {"nightly_job": nightly, "tuning_job": tuning}


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
        description="Launches one run over the days whose events files are new (never loaded) or changed.",
    )
    def new_landing_files_sensor(context: dg.SensorEvaluationContext, shop_source: ShopSourceResource):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        loaded = set(context.instance.get_materialized_partitions(RAW_EVENTS))
        new_days = []
        for day, path in sorted(shop_source.source().event_files().items()):
            stat = path.stat()
            signature = f"{stat.st_mtime_ns}:{stat.st_size}"
            key = day.isoformat()
            known = seen.get(key)
            seen[key] = signature
            if known == signature or (known is None and key in loaded and not context.cursor):
                # First tick: days already materialised (by `make run` or a backfill) are baselined.
                continue
            new_days.append(key)
        context.update_cursor(json.dumps(seen, sort_keys=True))
        if not new_days:
            return dg.SkipReason("no new or changed events files")
        # One run for the span of new days (a single-run backfill), not one run per file:
        # the model and the lists are rebuilt once. Days in between are reloaded as they are.
        first, last = new_days[0], new_days[-1]
        if first == last:
            return dg.RunRequest(run_key=f"{first}:{seen[first]}", partition_key=first)
        return dg.RunRequest(
            run_key=f"{first}..{last}:" + hashlib.sha1("|".join(seen[d] for d in new_days).encode()).hexdigest()[:12],
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        )

    return new_landing_files_sensor


def build_simulation(settings: Settings) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The synthetic shop's own night: shoppers live one more day, seeing the published
    lists, and its file lands before the nightly schedule picks it up. Demo only, so the
    schedule starts stopped."""

    @dg.op(description="Simulate the synthetic shop's next day, shoppers seeing the published lists.")
    def simulate_next_shop_day(context: dg.OpExecutionContext, warehouse: EngineResource) -> None:
        from recs_pipeline.privacy import Pseudonymizer
        from recs_pipeline.synthetic.continuation import (
            NoListsError,
            continue_landing_zone,
            lists_from_warehouse,
            pseudonym_map,
            sends_from_warehouse,
        )

        # The warehouse holds pseudonyms: the shop hashes its own ids with the same key.
        user_map = pseudonym_map(settings.landing_dir, Pseudonymizer.from_settings(settings.privacy).many)
        engine = warehouse.engine() if Path(warehouse.path).exists() else None
        try:
            lists = lists_from_warehouse(engine, user_map)
        except NoListsError as exc:
            context.log.warning(f"{exc}: simulating without recommendations")
            lists = None
        report = continue_landing_zone(settings.landing_dir, 1, lists, sends_from_warehouse(engine, user_map))
        context.log.info(
            f"wrote {report.days[0]}: {report.n_events_written} lines, {report.n_impressions} impressions, "
            f"{report.n_sends_answered} campaign sends delivered"
        )

    @dg.job(name="simulate_shop_day_job", description="The synthetic shop lives one more day (demo data).")
    def simulate_shop_day_job():
        simulate_next_shop_day()

    schedule = dg.ScheduleDefinition(
        name="simulate_shop_day_schedule",
        job=simulate_shop_day_job,
        cron_schedule="0 2 * * *",
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Demo: a new synthetic day lands at 02:00; with the new-files sensor on, the loop runs by itself.",
    )
    return simulate_shop_day_job, schedule
