"""The Dagster definitions, built by one function from the settings.

``dagster dev -m recs_pipeline.definitions`` loads ``defs``; tests call ``build_defs``
with their own settings (a temporary warehouse and landing zone).
"""

from __future__ import annotations

import dagster as dg

from recs_pipeline.defs.campaign_feedback import build_campaign_feedback_assets, build_campaign_feedback_checks
from recs_pipeline.defs.campaigns import build_campaign_assets, build_campaign_checks
from recs_pipeline.defs.feedback import build_feedback_assets
from recs_pipeline.defs.ingest import build_ingest_assets
from recs_pipeline.defs.marketing import campaign_content_is_sendable
from recs_pipeline.defs.ml import build_ml_assets
from recs_pipeline.defs.orchestration import build_jobs, build_schedule, build_sensor, build_simulation
from recs_pipeline.defs.partitions import build_daily_partitions
from recs_pipeline.defs.privacy import erasure_log, privacy_resource
from recs_pipeline.defs.publish import warehouse_snapshot
from recs_pipeline.defs.quality import build_quality_checks
from recs_pipeline.defs.ranking import build_ranking_assets
from recs_pipeline.defs.serving import build_serving_assets
from recs_pipeline.defs.text import build_text_assets
from recs_pipeline.defs.transform import build_transform_assets
from recs_pipeline.defs.tuning import build_tuning_assets
from recs_pipeline.resources import build_resources, dbt_project
from recs_pipeline.settings import Settings, load_settings
from recs_pipeline.sources.adapters import build_source


def build_assets(settings: Settings) -> tuple[list[dg.AssetsDefinition], dg.DailyPartitionsDefinition]:
    partitions = build_daily_partitions(settings, build_source(settings))
    assets = [
        *build_ingest_assets(partitions),
        *build_transform_assets(settings, dbt_project(settings), partitions),
        *build_text_assets(settings),
        *build_ml_assets(settings),
        *build_ranking_assets(settings),
        *build_tuning_assets(settings),
        *build_serving_assets(settings),
        *build_feedback_assets(settings),
        *build_campaign_assets(settings),
        *build_campaign_feedback_assets(settings),
        warehouse_snapshot,
        erasure_log,
    ]
    return assets, partitions


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    assets, partitions = build_assets(settings)
    jobs = build_jobs(partitions)
    schedules = [build_schedule(settings, jobs["nightly_job"])]
    extra_jobs = []
    if settings.source.kind == "synthetic":
        simulate_job, simulate_schedule = build_simulation(settings)
        extra_jobs.append(simulate_job)
        schedules.append(simulate_schedule)
    return dg.Definitions(
        assets=assets,
        asset_checks=[*build_quality_checks(settings), campaign_content_is_sendable, *build_campaign_checks(settings),
                      *build_campaign_feedback_checks(settings)],
        jobs=[*jobs.values(), *extra_jobs],
        schedules=schedules,
        sensors=[build_sensor(jobs["nightly_job"])],
        resources={**build_resources(settings), "privacy": privacy_resource(settings)},
        executor=run_executor(settings.engine.executor),
    )


def run_executor(kind: str) -> dg.ExecutorDefinition:
    """How a run's steps execute (``RECS_EXECUTOR``). By default one after another in one
    process: the DuckDB warehouse is one file with a single writer (DuckDB uses every core
    inside a step), and concurrent runs are serialised by the `duckdb` pool (dagster.yaml)
    and the file lock (recs_pipeline.warehouse). On Spark there is no such lock: a process
    or a Kubernetes job per step lets independent steps run side by side (raise the pool
    limit in dagster.yaml too; docs/scale.md)."""
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor  # pip install dagster-k8s, on the cluster's image

        return k8s_job_executor
    return dg.in_process_executor


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs()
