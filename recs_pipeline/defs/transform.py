"""Transform layer: the dbt project (staging, quality, features) as Dagster assets.

Two asset definitions over one dbt project: the per-day models (tag ``daily``) share
the daily partitions of ``raw/events`` and receive the partition window as vars;
everything else (snapshots, reconciliation, feature tables) is rebuilt from all days.
dbt tests become asset checks; ``dbt build`` skips models downstream of a failing test.
"""


import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from recs_pipeline.engine.folders import spark_table_names
from recs_pipeline.settings import Settings
from recs_pipeline.warehouse import writer_lock

# dbt schema -> Dagster group (asset keys are [schema, model], e.g. features/interactions).
GROUP_BY_SCHEMA = {
    "staging": "transform",
    "quality": "quality",
    "features": "features",
    "marketing": "marketing",
    "feedback": "feedback",
    "serving": "serving",
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

    def dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, step: str,
                  window: bool = False) -> Iterator[Any]:  # fmt: skip
        dbt_vars = settings.dbt_vars()
        # The partition window goes to the daily models as environment variables, not
        # vars: changed vars make dbt parse the whole project again, a changed env_var()
        # only the five files that read it (see PARTIAL_PARSE_FILE).
        window_env = {}
        if window:
            span = context.partition_time_window
            window_env = dict(zip(WINDOW_ENV, (span.start.date().isoformat(),
                                               (span.end - timedelta(days=1)).date().isoformat())))  # fmt: skip
        settings.export_env()
        if settings.engine.kind == "spark":
            # Each dbt process starts with an empty catalog: it registers these folders
            # (macro register_spark_tables, on-run-start).
            dbt_vars["spark_tables"] = spark_table_names(settings.engine_path)
        # Each invocation's artefacts go to a temporary folder: dagster-dbt otherwise
        # leaves a new copy of the manifest under dbt_project/target every run.
        # dbt opens a DuckDB warehouse without waiting for its lock: hold the pipeline's
        # cross-process lock for the whole invocation (see recs_pipeline.warehouse).
        # dbt's own log is kept under data/logs/dbt/ (dagster-dbt would put it in the
        # temporary target folder): the failure line points at it.
        log_path = settings.data_dir / "logs" / "dbt"
        log_path.mkdir(parents=True, exist_ok=True)
        # dbt's partial-parse state is kept per step between runs (the temporary target
        # folder would lose it): a step whose project files and vars did not change then
        # skips the full parse of the project, about 4 s of every dbt process.
        parse_state = settings.data_dir / "dbt" / f"{step}.{PARTIAL_PARSE_FILE}"
        lock = writer_lock(settings.warehouse_path) if settings.engine.kind == "duckdb" else nullcontext()
        with lock, tempfile.TemporaryDirectory(prefix="dbt-target-") as target:
            restore_parse_state(parse_state, Path(target))
            os.environ.update(window_env)  # dbt's process starts with a copy of this environment
            try:
                invocation = dbt.cli(
                    ["build", "--vars", json.dumps(dbt_vars), "--log-path", str(log_path)],
                    context=context,
                    target_path=Path(target),
                    raise_on_error=False,
                )
            finally:
                for name in window_env:
                    os.environ.pop(name, None)
            yield from invocation.stream()
            keep_parse_state(Path(target), parse_state)
            if not invocation.is_successful():
                error = invocation.get_error()
                raise dg.Failure(
                    description=dbt_failure_line(
                        _run_results(Path(target)), str(getattr(error, "description", "") or error or ""),
                        log_path / "dbt.log",
                    ),
                    metadata={"dbt_log": dg.MetadataValue.path(str(log_path / "dbt.log"))},
                )

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
        yield from dbt_build(context, dbt, "daily_dbt_models", window=True)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        exclude="tag:daily tag:after_serving",
        dagster_dbt_translator=translator,
        name="dbt_models",
        pool="duckdb",
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from dbt_build(context, dbt, "dbt_models")

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
        yield from dbt_build(context, dbt, "after_serving_dbt_models")

    return [daily_dbt_models, dbt_models, after_serving_dbt_models]


PARTIAL_PARSE_FILE = "partial_parse.msgpack"  # dbt's name, in its target folder
WINDOW_ENV = ("RECS_DBT_MIN_DATE", "RECS_DBT_MAX_DATE")  # the daily models' partition window (inclusive)


def restore_parse_state(state: Path, target: Path) -> None:
    """Put a kept partial-parse state into a fresh dbt target folder. dbt checks it
    (project files, vars, profile, dbt version) and parses in full when it is stale."""
    if state.is_file():
        shutil.copyfile(state, target / PARTIAL_PARSE_FILE)


def keep_parse_state(target: Path, state: Path) -> None:
    """Keep the state dbt left in ``target`` for the next run of the step (written to a
    temporary name and renamed, so a concurrent reader never sees half a file)."""
    produced = target / PARTIAL_PARSE_FILE
    if not produced.is_file():
        return
    state.parent.mkdir(parents=True, exist_ok=True)
    partial = state.with_name(f".{state.name}.{os.getpid()}")
    shutil.copyfile(produced, partial)
    os.replace(partial, state)


def _run_results(target: Path) -> dict:
    try:
        return json.loads((target / "run_results.json").read_text())
    except (OSError, ValueError):
        return {}


def dbt_failure_line(run_results: dict, error_text: str, log_file: Path) -> str:
    """One line naming what failed in a dbt invocation and dbt's own first error line,
    e.g. ``stg_users: Conversion Error: invalid date field format ... (dbt log: ...)``.

    From run_results.json when dbt ran the model; from the errors dbt logged otherwise
    (a compilation error stops dbt before any model runs)."""
    failed = [r for r in run_results.get("results", []) if r.get("status") in ("error", "fail", "runtime error")]
    parts = []
    for result in failed[:3]:
        # model.<project>.<name>, test.<project>.<name>.<hash>
        unique_id = str(result.get("unique_id", "?"))
        name = unique_id.split(".")[2] if unique_id.count(".") >= 2 else unique_id
        parts.append(f"{name}: {_first_error_line(result.get('message') or result.get('status', 'failed'))}")
    if not parts:
        logged = error_text.split("Errors parsed from dbt logs:", 1)[-1] if "Errors parsed" in error_text else ""
        found = re.search(r"(?:\w+ )?Error in (?:model|test|seed|snapshot|macro) (\w+)[^\n]*\n([^\n]+)", logged)
        if found:
            parts.append(f"{found.group(1)}: {found.group(2).strip()}")
        elif logged.strip():
            parts.append(_first_error_line(logged.replace("Encountered an error:", "")))
        else:
            parts.append("dbt failed before running a model")
    more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
    return "; ".join(parts) + more + f" (dbt log: {log_file})"


def _first_error_line(message: str) -> str:
    """dbt's message without its 'Runtime Error in model x (path)' preamble."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    preamble = ("runtime error in", "database error in", "compilation error in")
    lines = [line for line in lines if not line.lower().startswith(preamble)]
    return lines[0] if lines else str(message).strip()
