"""What only the DuckDB engine (the default) promises (its column types, no views left
behind), its settings and resources, and the rule that migrated asset code talks to
tables only through the engine. The contract every engine keeps is in
test_engine_contract.py."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from recs_pipeline.engine import Engine, Session, create_engine
from recs_pipeline.engine.duckdb import DuckDBEngine
from recs_pipeline.resources import EngineResource, WarehouseResource, build_resources
from recs_pipeline.settings import load_settings

from .conftest import settings_for

PACKAGE = Path(__file__).resolve().parent.parent / "recs_pipeline"
# Asset modules moved onto the engine interface: no DuckDB, no raw connections.
MIGRATED = ["text", "ranking", "tuning", "serving", "ml", "metadata", "publish", "marketing", "quality", "feedback", "campaigns"]


@pytest.fixture
def engine(tmp_path) -> Engine:
    return create_engine("duckdb", tmp_path / "warehouse.duckdb")


def _days(rows: list[tuple[date, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["day", "item_id"])


# --- reading ------------------------------------------------------------------------


def test_reads_come_back_as_frames_arrow_and_python_values(engine):
    assert isinstance(engine, DuckDBEngine) and engine.kind == "duckdb"
    with engine.session() as db:
        assert isinstance(db, Session)
        db.execute("CREATE SCHEMA s")
        db.execute("CREATE TABLE s.t (id INTEGER, name VARCHAR, score DOUBLE)")
        db.execute("INSERT INTO s.t VALUES (?, ?, ?), (?, ?, ?)", [1, "a", 0.5, 2, "b", None])
        frame = db.df("SELECT * FROM s.t WHERE id >= ? ORDER BY id", [1])
        table = db.arrow("SELECT id, name FROM s.t ORDER BY id")
        assert isinstance(frame, pd.DataFrame) and frame["name"].tolist() == ["a", "b"]
        assert isinstance(table, pa.Table) and table.column("id").to_pylist() == [1, 2]
        assert table.schema.field("id").type == pa.int32()
        assert db.scalar("SELECT count(*) FROM s.t") == 2
        assert db.scalar("SELECT id FROM s.t WHERE false") is None
        assert db.row("SELECT id, name FROM s.t ORDER BY id") == (1, "a")
        assert db.rows("SELECT id FROM s.t ORDER BY id") == [(1,), (2,)]
        assert db.columns("s.t") == [("id", "INTEGER"), ("name", "VARCHAR"), ("score", "DOUBLE")]
        assert db.table_exists("s.t") and not db.table_exists("s.nothing") and not db.table_exists("t")
    # One-call conveniences open a session of their own.
    assert engine.scalar("SELECT max(id) FROM s.t") == 2
    assert engine.df("SELECT name FROM s.t ORDER BY 1")["name"].tolist() == ["a", "b"]


def test_tables_lists_base_tables_by_schema(engine):
    with engine.session() as db:
        db.replace_table("b.two", "SELECT 1 AS x")
        db.replace_table("a.one", "SELECT 1 AS x")
        db.replace_table("plain", "SELECT 1 AS x")
        db.execute("CREATE VIEW a.v AS SELECT * FROM a.one")
        db.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS x")
        assert db.tables() == ["a.one", "b.two", "main.plain"]
        assert db.tables(["a"]) == ["a.one"]
        assert db.tables(["a"], include_views=True) == ["a.one", "a.v"]
        assert db.tables([]) == []
    assert engine.tables(["b"]) == ["b.two"]


# --- replace_table ------------------------------------------------------------------


def test_replace_table_from_sql_frame_and_arrow(engine):
    with engine.session() as db:
        assert db.replace_table("ml.t", "SELECT range AS id FROM range(?)", [3]) == 3
        frame = pd.DataFrame({"id": [3, 1, 2], "ts": pd.to_datetime(["2024-01-01"] * 3).as_unit("ns")})
        assert db.replace_table("ml.t", frame.astype({"id": "int32"})) == 3
        # Rows kept in the frame's order; types from the frame (nanoseconds stored as TIMESTAMP).
        assert db.rows("SELECT id FROM ml.t") == [(3,), (1,), (2,)]
        assert db.columns("ml.t") == [("id", "INTEGER"), ("ts", "TIMESTAMP")]
        vectors = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0, 3.0, 4.0], type=pa.float32()), 2)
        arrow = pa.table({"id": pa.array(["x", "y"]), "v": vectors})
        assert db.replace_table("ml.t", arrow) == 2
        assert db.columns("ml.t") == [("id", "VARCHAR"), ("v", "FLOAT[2]")]
        # The frame is gone once the table is built: nothing registered stays behind.
        assert db.tables(include_views=True) == ["ml.t"]
        assert db.scalar("SELECT count(*) FROM duckdb_views() WHERE NOT internal") == 0
        with pytest.raises(TypeError):
            db.replace_table("ml.t", [(1,)])


def test_a_failing_replacement_keeps_the_old_table(engine):
    with engine.session() as db:
        db.replace_table("ml.t", pd.DataFrame({"id": [1, 2]}))
        with pytest.raises(Exception):
            db.replace_table("ml.t", "SELECT CAST('not a number' AS INTEGER) AS id")
        assert db.rows("SELECT id FROM ml.t ORDER BY id") == [(1,), (2,)]
        with pytest.raises(Exception):
            db.replace_table("ml.t", "SELECT id FROM ml.nowhere")
        assert db.rows("SELECT id FROM ml.t ORDER BY id") == [(1,), (2,)]
    # ...and the session still works afterwards: no transaction left open.
    with engine.session() as db:
        assert db.replace_table("ml.t", "SELECT 7 AS id") == 1


# --- replace_partition --------------------------------------------------------------


def test_replace_partition_refuses_rows_of_another_day_and_changes_nothing(engine):
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    with engine.session() as db:
        db.replace_partition("raw.t", _days([(d1, "a")]), "day", d1)
        with pytest.raises(ValueError, match="other than"):
            db.replace_partition("raw.t", _days([(d1, "b"), (d2, "c")]), "day", d1)
        with pytest.raises(Exception):
            db.replace_partition("raw.t", "SELECT CAST('x' AS DATE) AS day, 'b' AS item_id", "day", d1)
        assert db.rows("SELECT day, item_id FROM raw.t") == [(d1, "a")]
        assert db.tables(include_views=True) == ["raw.t"]


# --- publishing, settings and resources -----------------------------------------------


def test_publish_snapshot_copies_every_table(engine, tmp_path):
    with engine.session() as db:
        db.replace_table("serving.t", "SELECT 1 AS x")
    target = engine.publish_snapshot(tmp_path / "published" / "warehouse.duckdb").path
    snapshot = DuckDBEngine(target)
    assert snapshot.tables() == ["serving.t"] and snapshot.scalar("SELECT x FROM serving.t") == 1


def test_engine_setting_defaults_to_duckdb_and_spark_is_configured_in_one_place(tmp_path):
    assert settings_for(tmp_path).engine.kind == "duckdb"
    assert settings_for(tmp_path, RECS_ENGINE="DuckDB").engine.kind == "duckdb"
    with pytest.raises(ValueError, match="not one of"):
        settings_for(tmp_path, RECS_ENGINE="oracle")
    spark = settings_for(tmp_path, RECS_ENGINE="spark", RECS_SPARK_DRIVER_MEMORY="6g")
    assert spark.engine.kind == "spark" and spark.engine.spark_driver_memory == "6g"
    assert spark.engine.spark_master == "local[*]"
    # The tables live in a folder under the data dir; the resource points the engine there.
    assert spark.engine_path == tmp_path / "spark-warehouse"
    resource = build_resources(spark)["warehouse"]
    assert resource.kind == "spark" and resource.path == str(tmp_path / "spark-warehouse")
    assert resource.spark_driver_memory == "6g"
    config = tmp_path / "recs.toml"
    config.write_text('[engine]\nkind = "spark"\nspark_master = "spark://head:7077"\nspark_warehouse = "wh"\n')
    from_file = load_settings({"RECS_CONFIG": str(config), "RECS_DATA_DIR": str(tmp_path)}).engine
    assert from_file.kind == "spark" and from_file.spark_master == "spark://head:7077"
    assert from_file.spark_warehouse == tmp_path / "wh"  # relative to the config file
    config.write_text('[engine]\nkind = "duckdb"\nthreads = 4\n')
    with pytest.raises(ValueError, match="unknown key"):
        load_settings({"RECS_CONFIG": str(config), "RECS_DATA_DIR": str(tmp_path)})
    # dbt's profile follows the engine: its target and Spark's settings come from the env.
    import os

    spark.export_env()
    assert os.environ["RECS_DBT_TARGET"] == "spark"
    assert os.environ["RECS_SPARK_WAREHOUSE"] == str(tmp_path / "spark-warehouse")
    settings_for(tmp_path).export_env()
    assert os.environ["RECS_DBT_TARGET"] == "local"


def test_the_spark_engine_says_how_to_install_it_when_pyspark_is_missing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyspark", None)  # as on an install without the extra
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[spark\]'"):
        create_engine("spark", tmp_path / "spark-warehouse")


def test_the_warehouse_resource_is_the_engine_resource(tmp_path):
    settings = settings_for(tmp_path)
    resource = build_resources(settings)["warehouse"]
    assert isinstance(resource, EngineResource) and isinstance(resource, WarehouseResource)
    assert resource.kind == "duckdb" and resource.path == str(settings.warehouse_path)
    assert isinstance(resource.engine(), DuckDBEngine)

    @dg.asset
    def probe(warehouse: EngineResource) -> dg.MaterializeResult:
        with warehouse.session() as db:
            n = db.replace_table("ml.probe", pd.DataFrame({"x": [1, 2, 3]}))
        return dg.MaterializeResult(metadata={"n": n})

    result = dg.materialize([probe], resources={"warehouse": resource})
    assert result.success
    assert result.get_asset_materialization_events()[0].materialization.metadata["n"].value == 3


# --- the migrated asset modules -------------------------------------------------------


@pytest.mark.parametrize("module", MIGRATED)
def test_migrated_modules_touch_tables_only_through_the_engine(module):
    source = (PACKAGE / "defs" / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = {name for name in imported if name.split(".")[0] == "duckdb" or name == "recs_pipeline.warehouse"}
    assert not forbidden, f"defs/{module}.py imports {forbidden}"
    for raw in (".register(", ".connect(", "fetchall(", "fetchnumpy(", "ORDER BY ALL", "information_schema"):
        assert raw not in source, f"defs/{module}.py uses {raw!r}: go through the engine session"


def test_the_executor_setting_picks_how_a_run_executes_its_steps(tmp_path):
    from recs_pipeline.definitions import build_defs

    assert settings_for(tmp_path).engine.executor == "in_process"
    with pytest.raises(ValueError, match="not one of"):
        settings_for(tmp_path, RECS_EXECUTOR="threads")
    job = build_defs(settings_for(tmp_path, RECS_EXECUTOR="multiprocess")).resolve_job_def("nightly_job")
    assert job.executor_def.name == "multiprocess"
    default = build_defs(settings_for(tmp_path)).resolve_job_def("nightly_job")
    assert default.executor_def.name == "in_process"
