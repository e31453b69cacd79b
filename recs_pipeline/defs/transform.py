"""Transform layer: the dbt project (staging, quality, features) as Dagster assets.

Two asset definitions over one dbt project: the per-day models (tag ``daily``) share
the daily partitions of ``raw/events`` and receive the partition window as vars;
everything else (snapshots, reconciliation, feature tables) is rebuilt from all days.
dbt tests become asset checks; ``dbt build`` skips models downstream of a failing test.
"""


import json
import tempfile
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from recs_pipeline.settings import Settings
from recs_pipeline.warehouse import writer_lock

# dbt schema -> Dagster group (asset keys are [schema, model], e.g. features/interactions).
GROUP_BY_SCHEMA = {
    "staging": "transform",
    "quality": "quality",
    "features": "features",
    "marketing": "marketing",
    "feedback": "feedback",
}


class RecsDbtTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)  # meta.dagster.asset_key: raw/...
        schema = dbt_resource_props["config"].get("schema") or "main"
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        schema = dbt_resource_props["config"].get("schema")
        return GROUP_BY_SCHEMA.get(schema, "transform")

    def get_pool(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "duckdb"


def build_transform_assets(
    settings: Settings, project: DbtProject, partitions: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    translator = RecsDbtTranslator()

    def dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, window: bool = False) -> Iterator[Any]:
        dbt_vars = settings.dbt_vars()
        if window:
            span = context.partition_time_window
            dbt_vars |= {
                "min_date": span.start.date().isoformat(),
                "max_date": (span.end - timedelta(days=1)).date().isoformat(),
            }
        settings.export_env()
        # Each invocation's artefacts go to a temporary folder: dagster-dbt otherwise
        # leaves a new copy of the manifest under dbt_project/target every run.
        # dbt opens the warehouse without waiting for DuckDB's lock: hold the pipeline's
        # cross-process lock for the whole invocation (see recs_pipeline.warehouse).
        with writer_lock(settings.warehouse_path), tempfile.TemporaryDirectory(prefix="dbt-target-") as target:
            yield from dbt.cli(
                ["build", "--vars", json.dumps(dbt_vars)], context=context, target_path=Path(target)
            ).stream()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        select="tag:daily",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=translator,
        name="daily_dbt_models",
        pool="duckdb",
    )
    def daily_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from dbt_build(context, dbt, window=True)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        exclude="tag:daily tag:after_serving",
        dagster_dbt_translator=translator,
        name="dbt_models",
        pool="duckdb",
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from dbt_build(context, dbt)

    # The feedback and campaign models read the lists the serving assets wrote, so they
    # are a separate step after serving (one multi-asset cannot sit on both sides of it).
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        select="tag:after_serving",
        dagster_dbt_translator=translator,
        name="after_serving_dbt_models",
        pool="duckdb",
    )
    def after_serving_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from dbt_build(context, dbt)

    return [daily_dbt_models, dbt_models, after_serving_dbt_models]
