"""dbt on Spark, table for table equal to DuckDB (`make test-spark`).

The whole graph runs over a small dirty shop twice: on DuckDB, and on Spark
(``RECS_ENGINE=spark``: dbt-spark's session method, Parquet tables, the Python assets
through the engine interface). Every table of the pipeline's schemas must give the same
row count and the same content fingerprint on both engines (recs_pipeline.engine.parity):
floats to 6 digits, timestamps in UTC, order-independent. The figures go to
benchmarks/results/engine_parity.json.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from recs_pipeline.definitions import build_defs
from recs_pipeline.engine import create_engine
from recs_pipeline.engine.parity import compare_frames
from recs_pipeline.settings import PROJECT_ROOT

from .conftest import settings_for
from .test_pipeline import run_all_days

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# The schemas compared (every table in them), and the columns that hold when a row was
# written rather than what it says (they differ between any two runs).
SCHEMAS = ["raw", "staging", "quality", "features", "serving", "feedback", "marketing"]
WALL_CLOCK_COLUMNS = {"loaded_at", "detected_at", "resolved_at"}
PARITY_JSON = PROJECT_ROOT / "benchmarks" / "results" / "engine_parity.json"


def dbt_asset_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    keys = []
    for assets_def in defs.resolve_all_asset_specs():
        if "dbt" in (assets_def.kinds or set()):
            keys.append(assets_def.key)
    return keys


@pytest.fixture(scope="module")
def both_engines(small_shop, tmp_path_factory):
    root, _ = small_shop
    landing = str(root / "landing")
    on_duckdb = settings_for(tmp_path_factory.mktemp("duckdb"), RECS_LANDING_DIR=landing)
    from recs_pipeline.sources.adapters import build_source

    days = build_source(on_duckdb).event_days()
    assert run_all_days(on_duckdb, days).success
    duckdb_engine = create_engine("duckdb", on_duckdb.warehouse_path)

    on_spark = settings_for(tmp_path_factory.mktemp("spark"), RECS_LANDING_DIR=landing, RECS_ENGINE="spark")
    result = run_all_days(on_spark, days)
    spark_engine = create_engine("spark", on_spark.engine_path, spark=on_spark.engine)
    return on_duckdb, on_spark, duckdb_engine, spark_engine, result, days


def test_the_whole_graph_and_its_checks_run_on_spark(both_engines):
    _, _, _, spark_engine, result, _ = both_engines
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert result.success, f"steps failed on Spark: {failed}"
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert checks and all(c.passed for c in checks if c.severity.value == "ERROR"), [
        c.asset_check_key.name for c in checks if not c.passed
    ]


def test_every_table_is_equal_on_both_engines(both_engines):
    _, _, duckdb_engine, spark_engine, _, _ = both_engines
    tables = duckdb_engine.tables(SCHEMAS)
    assert spark_engine.tables(SCHEMAS) == tables

    def read(engine, table):
        # Through Arrow on both: dates stay dates (DuckDB's own .df() makes them timestamps).
        frame = engine.arrow(f"SELECT * FROM {table}").to_pandas()
        return frame.drop(columns=[c for c in frame.columns if c in WALL_CLOCK_COLUMNS])

    report = {t: compare_frames(read(duckdb_engine, t), read(spark_engine, t)) for t in tables}
    PARITY_JSON.parent.mkdir(parents=True, exist_ok=True)
    PARITY_JSON.write_text(json.dumps({"tables": {
        t: {"duckdb_rows": int(r["duckdb_rows"]), "spark_rows": int(r["spark_rows"]), "equal": bool(r["equal"])}
        for t, r in report.items()
    }}, indent=2) + "\n")
    unequal = {t: r for t, r in report.items() if not r["equal"]}
    assert not unequal, json.dumps(unequal, indent=1, default=str)
    # The reconciliation holds on Spark too: raw = clean + quarantined + duplicates.
    assert spark_engine.scalar("SELECT count(*) FROM quality.event_reconciliation WHERE NOT is_balanced") == 0


def test_re_running_a_day_on_spark_replaces_it(both_engines):
    _, on_spark, _, spark_engine, _, days = both_engines
    tables = ["raw.events", "staging.stg_events", "quality.quarantine_events", "quality.duplicate_events"]
    before = {t: spark_engine.scalar(f"SELECT count(*) FROM {t}") for t in tables}
    day = days[2]
    with spark_engine.session() as db:
        # The raw day loaded again (the same rows): replaced, not appended.
        raw_day = db.arrow("SELECT * FROM raw.events WHERE partition_date = ?", [day])
        db.replace_partition("raw.events", raw_day, "partition_date", day)
        assert db.scalar("SELECT count(*) FROM raw.events WHERE partition_date = ?", [day]) == raw_day.num_rows
    defs = build_defs(on_spark)
    daily = [k for k in dbt_asset_keys(defs) if k.path[-1] in ("int_events_validated", "stg_events", "quarantine_events", "duplicate_events")]
    result = defs.resolve_job_def("nightly_job").execute_in_process(
        asset_selection=daily, partition_key=day.isoformat(), raise_on_error=False
    )
    assert result.success
    after = {t: spark_engine.scalar(f"SELECT count(*) FROM {t}") for t in tables}
    assert after == before
