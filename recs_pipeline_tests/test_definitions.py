"""The definitions load and describe the pipeline the way users see it in the UI."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from recs_pipeline.definitions import build_defs

from .conftest import settings_for


def test_definitions_load_with_every_layer(tmp_path):
    defs = build_defs(settings_for(tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for expected in (
        "raw/events",
        "raw/items",
        "raw/users",
        "staging/stg_events",
        "quality/quarantine_events",
        "quality/event_reconciliation",
        "features/interactions",
        "features/user_features",
        "features/item_features",
    ):
        assert expected in keys
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {"ingest", "transform", "quality", "features"} <= groups
    # raw/events and the per-day dbt models share the daily partitions.
    assert graph.get(dg.AssetKey(["raw", "events"])).partitions_def is not None
    assert graph.get(dg.AssetKey(["staging", "stg_events"])).partitions_def is not None
    assert graph.get(dg.AssetKey(["features", "interactions"])).partitions_def is None


def test_the_published_snapshot_waits_for_every_step_of_the_nightly_run(tmp_path):
    """Every asset the nightly job materialises is upstream of the snapshot, or comes out
    of the same step as one that is; else the snapshot could be taken before it."""
    defs = build_defs(settings_for(tmp_path))
    graph = defs.resolve_asset_graph()
    snapshot = dg.AssetKey(["published", "warehouse_snapshot"])
    before = dg.AssetSelection.assets(snapshot).upstream().resolve(graph)
    nightly = defs.resolve_job_def("nightly_job").asset_layer.selected_asset_keys
    steps_before = {graph.get(k).assets_def for k in before}
    later = {k.to_user_string() for k in nightly - before if graph.get(k).assets_def not in steps_before}
    assert later == set()
    assert dg.AssetKey(["feedback", "campaign_results"]) in before


def test_quality_checks_are_blocking(tmp_path):
    defs = build_defs(settings_for(tmp_path))
    checks = {spec.name: spec for checks_def in defs.asset_checks for spec in checks_def.check_specs}
    for name in ("raw_events_have_lineage", "stg_events_are_valid", "raw_rows_reconcile",
                 "interactions_reference_known_users_and_items"):
        assert checks[name].blocking, name


def test_schedule_runs_by_default_and_sensor_is_opt_in(tmp_path):
    defs = build_defs(settings_for(tmp_path))
    schedule = defs.resolve_schedule_def("nightly_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.execution_timezone == "UTC"
    assert defs.resolve_sensor_def("new_landing_files_sensor").default_status == dg.DefaultSensorStatus.STOPPED


def test_schedule_skips_when_yesterdays_file_is_missing(tmp_path):
    defs = build_defs(settings_for(tmp_path))
    schedule = defs.resolve_schedule_def("nightly_schedule")
    with dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 9, 3, 3, tzinfo=timezone.utc),
        resources={"shop_source": defs.resources["shop_source"]},
    ) as context:
        result = schedule.evaluate_tick(context)
    assert result.skip_message and "2026-09-02" in result.skip_message


def test_sensor_requests_runs_for_new_and_changed_files(small_shop, tmp_path):
    import shutil

    root, report = small_shop
    landing = tmp_path / "landing"
    shutil.copytree(root / "landing", landing)
    defs = build_defs(settings_for(tmp_path, RECS_LANDING_DIR=str(landing)))
    sensor = defs.resolve_sensor_def("new_landing_files_sensor")
    instance = dg.DagsterInstance.ephemeral()
    resources = {"shop_source": defs.resources["shop_source"]}

    repo = defs.get_repository_def()
    with dg.build_sensor_context(instance=instance, resources=resources, repository_def=repo) as context:
        first = sensor.evaluate_tick(context)
    # Nothing loaded yet: one run over every day, not one run per file.
    [request] = first.run_requests
    days = sorted(p.stem for p in report.event_files)
    assert request.tags["dagster/asset_partition_range_start"] == days[0]
    assert request.tags["dagster/asset_partition_range_end"] == days[-1]

    with dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor, repository_def=repo) as context:
        assert not sensor.evaluate_tick(context).run_requests  # nothing changed

    changed = sorted((landing / "events").glob("*.csv"))[3]
    changed.write_text(changed.read_text() + changed.read_text().splitlines()[-1] + "\n")
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor, repository_def=repo) as context:
        again = sensor.evaluate_tick(context)
    assert [r.partition_key for r in again.run_requests] == [changed.stem]


def test_shop_simulation_is_an_opt_in_demo_for_the_synthetic_source_only(tmp_path):
    synthetic = build_defs(settings_for(tmp_path))
    schedule = synthetic.resolve_schedule_def("simulate_shop_day_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert synthetic.resolve_job_def("simulate_shop_day_job") is not None
    retail = build_defs(settings_for(tmp_path, RECS_SOURCE="online_retail", RECS_SOURCE_PATH=str(tmp_path / "none")))
    assert [s.name for s in retail.schedules] == ["nightly_schedule"]
